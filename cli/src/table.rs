//! Plain-text tables and number formatting for human output.

/// A table printed with aligned columns: text left, numbers right.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(headers: I) -> Self {
        Table { headers: headers.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Adds a row. Control characters in a cell (a run name with ESC or a newline, an error
    /// message from the database) are escaped here, for every table at once: printed raw they
    /// could clear the terminal, recolour it or break the row over several lines.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(
            cells
                .into_iter()
                .map(|cell| {
                    let cell: String = cell.into();
                    match effnas_store::escape_control(&cell) {
                        std::borrow::Cow::Borrowed(_) => cell,
                        std::borrow::Cow::Owned(escaped) => escaped,
                    }
                })
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                self.rows.iter().all(|r| {
                    r.get(i).is_none_or(|c| {
                        c.is_empty()
                            || c == "-"
                            || c.trim_end_matches(['%', 'M', 'G', 'K', 'x', '×', 's']).parse::<f64>().is_ok()
                    })
                })
            })
            .collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let pad = widths[i] - cell.chars().count();
                if i > 0 {
                    out.push_str("  ");
                }
                if numeric[i] {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < columns {
                        out.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.headers);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// `5288548` → `5.29M`, `385814752` → `385.8M`, `37745884192` → `37.75G`.
pub fn human_count(value: u64) -> String {
    let v = value as f64;
    if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e8 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_align_right_and_text_left() {
        let mut table = Table::new(["name", "params"]);
        table.row(["b0", "5.29M"]);
        table.row(["mnasnet-a1", "3.89M"]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name        params");
        assert_eq!(lines[2], "b0           5.29M");
    }

    #[test]
    fn control_characters_in_cells_are_escaped() {
        let mut table = Table::new(["name"]);
        table.row(["evil\u{1b}[2J\nname"]);
        let text = table.render();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("evil\\u{1b}[2J\\nname") && !text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(human_count(5_288_548), "5.29M");
        assert_eq!(human_count(385_814_752), "385.8M");
        assert_eq!(human_count(37_745_884_192), "37.75G");
        assert_eq!(human_count(950), "950");
    }
}
