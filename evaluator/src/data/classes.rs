//! A data set restricted to some of its classes, relabelled `0..k`: what a transfer experiment
//! needs to train on one half of a data set's classes and fine-tune on the other (the transfer
//! setting of Kornblith et al., 2019, "Do Better ImageNet Models Transfer Better?", on a small
//! scale). Classes are written as a list of indices and ranges, `0-4` or `0,2,5-7`.

use super::{DataError, Dataset, ImageSet};

/// Parses a class list such as `0-4`, `5,6,7` or `0,2,5-7` into ascending, distinct indices
/// (a range's ends included). The error names the token at fault.
pub fn parse_class_list(text: &str) -> Result<Vec<u32>, DataError> {
    let bad =
        |token: &str, why: &str| DataError::InvalidArgument(format!("class list {text:?}: {token:?} {why}"));
    let mut classes = Vec::new();
    for token in text.split(',').map(str::trim) {
        let number = |part: &str| {
            part.trim().parse::<u32>().map_err(|_| bad(token, "is not a class index or a range A-B"))
        };
        match token.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (number(low)?, number(high)?);
                if low > high {
                    return Err(bad(token, "is a range whose start is above its end"));
                }
                classes.extend(low..=high);
            }
            None => classes.push(number(token)?),
        }
    }
    classes.sort_unstable();
    let before = classes.len();
    classes.dedup();
    if classes.len() != before {
        return Err(DataError::InvalidArgument(format!("class list {text:?} names a class twice")));
    }
    Ok(classes)
}

/// The canonical spelling of a class list: ascending, runs of three or more as ranges
/// (`[0, 1, 2, 3, 4]` → `0-4`, `[0, 2, 5, 6, 7]` → `0,2,5-7`).
pub fn format_class_list(classes: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < classes.len() {
        let mut j = i;
        while j + 1 < classes.len() && classes[j + 1] == classes[j] + 1 {
            j += 1;
        }
        match j - i {
            0 => parts.push(classes[i].to_string()),
            1 => parts.extend([classes[i].to_string(), classes[j].to_string()]),
            _ => parts.push(format!("{}-{}", classes[i], classes[j])),
        }
        i = j + 1;
    }
    parts.join(",")
}

impl ImageSet {
    /// The images of `classes` only (in the set's order), relabelled by their position in
    /// `classes`: the first listed class becomes label 0. Class names follow. Every class must
    /// exist, and at least two must be kept: a classifier needs two.
    pub fn select_classes(&self, classes: &[u32]) -> Result<ImageSet, DataError> {
        if let Some(&missing) = classes.iter().find(|&&c| c >= self.num_classes) {
            return Err(DataError::InvalidArgument(format!(
                "class {missing} does not exist: the data set has classes 0 to {}",
                self.num_classes.saturating_sub(1)
            )));
        }
        if classes.len() < 2 {
            return Err(DataError::InvalidArgument(format!(
                "{} class(es) selected: a classifier needs at least 2",
                classes.len()
            )));
        }
        let mut new_label = vec![-1i64; self.num_classes as usize];
        for (position, &class) in classes.iter().enumerate() {
            new_label[class as usize] = position as i64;
        }
        let labels = self.label_values()?;
        let kept: Vec<i64> =
            (0..labels.len()).filter(|&i| new_label[labels[i] as usize] >= 0).map(|i| i as i64).collect();
        let relabelled: Vec<i64> = kept.iter().map(|&i| new_label[labels[i as usize] as usize]).collect();
        let images = self.subset(&kept)?.images;
        let names = classes.iter().map(|&c| self.class_names[c as usize].clone()).collect();
        ImageSet::from_parts(images, relabelled, names)
    }
}

impl Dataset {
    /// The data set with its training and test sets restricted to `classes` (see
    /// [`ImageSet::select_classes`]).
    pub fn select_classes(&self, classes: &[u32]) -> Result<Dataset, DataError> {
        Ok(Dataset {
            name: self.name.clone(),
            format: self.format,
            source: self.source.clone(),
            train: self.train.select_classes(classes)?,
            test: self.test.as_ref().map(|t| t.select_classes(classes)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn class_lists_parse_and_print_canonically() -> Result<(), DataError> {
        assert_eq!(parse_class_list("0-4")?, vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_class_list("7, 5,6")?, vec![5, 6, 7]);
        assert_eq!(parse_class_list("0,2,5-7")?, vec![0, 2, 5, 6, 7]);
        assert_eq!(format_class_list(&[0, 1, 2, 3, 4]), "0-4");
        assert_eq!(format_class_list(&[0, 2, 5, 6, 7]), "0,2,5-7");
        assert_eq!(format_class_list(&[3, 4]), "3,4");
        for (bad, culprit) in [("0-x", "\"0-x\""), ("4-2", "\"4-2\""), ("", "\"\""), ("1,1", "twice")] {
            let message = parse_class_list(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(culprit), "{bad}: {message}");
        }
        Ok(())
    }

    #[test]
    fn selected_classes_are_relabelled_in_the_listed_order() -> Result<(), Box<dyn std::error::Error>> {
        // Image i has every pixel equal to i and label i % 4.
        let images = Tensor::f_arange(8, (Kind::Uint8, Device::Cpu))?.f_reshape([8, 1, 1, 1])?;
        let labels = Tensor::f_arange(8, (Kind::Int64, Device::Cpu))?.f_remainder(4)?;
        let names = ["a", "b", "c", "d"].map(String::from).to_vec();
        let set = ImageSet::new(images, labels, names)?;
        let picked = set.select_classes(&[3, 1])?;
        assert_eq!(picked.class_names, ["d", "b"]);
        assert_eq!(picked.label_values()?, vec![1, 0, 1, 0]);
        let mut pixels = vec![0u8; 4];
        picked.images.f_copy_data(&mut pixels, 4)?;
        assert_eq!(pixels, [1, 3, 5, 7]);
        assert!(set.select_classes(&[1, 4]).is_err());
        assert!(set.select_classes(&[2]).is_err());
        Ok(())
    }
}
