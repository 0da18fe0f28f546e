//! Choosing a device once, checking it is there, and sizing libtorch's CPU thread pool.

use tch::{Cuda, Device};

use crate::error::{EvalError, Result};

/// Parses `cpu`, `cuda` (device 0) or `cuda:N`. Does not check availability: see [`check`].
pub fn parse_device(text: &str) -> Result<Device> {
    let text = text.trim().to_ascii_lowercase();
    match text.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(Device::Cuda)
            .ok_or_else(|| EvalError::BadDevice(text.clone())),
    }
}

/// Parses a device and checks that it exists on this machine, so a missing GPU is reported
/// before any work starts.
pub fn resolve_device(text: &str) -> Result<Device> {
    let device = parse_device(text)?;
    check(device)?;
    Ok(device)
}

/// Checks that `device` is usable: CPU always is; `cuda:N` needs a CUDA build of libtorch and at
/// least N + 1 devices.
pub fn check(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(index) => {
            let unavailable =
                |reason: String| EvalError::DeviceUnavailable { requested: device_name(device), reason };
            if !Cuda::is_available() {
                return Err(unavailable(
                    "libtorch sees no CUDA device (no GPU, no driver, or libtorch_cuda not linked)"
                        .to_owned(),
                ));
            }
            let count = Cuda::device_count();
            if i64::try_from(index).map_or(true, |i| i >= count) {
                return Err(unavailable(format!("this machine has {count} CUDA device(s)")));
            }
            Ok(())
        }
        other => Err(EvalError::BadDevice(format!("{other:?}"))),
    }
}

/// `cpu` or `cuda:N`, the form [`parse_device`] reads back.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(index) => format!("cuda:{index}"),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Logical CPU cores available to this process.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// libtorch intra-op threads for each of `workers` CPU workers of this process, so that together
/// they use no more threads than the process may: libtorch's current setting (`--threads`, else
/// its default of one per core) shared out among them. Oversubscription slows every worker down,
/// and badly so across processes: two worker processes of `--threads 1` that each gave its one
/// training thread all cores spent most of their CPU time spinning in OpenMP's barriers.
/// Read before the workers start (each sets the setting, which libtorch keeps process-wide).
pub fn threads_per_worker(workers: usize) -> usize {
    let budget = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
    (budget / workers.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_parse() {
        assert_eq!(parse_device("cpu").ok(), Some(Device::Cpu));
        assert_eq!(parse_device("CUDA").ok(), Some(Device::Cuda(0)));
        assert_eq!(parse_device("cuda:3").ok(), Some(Device::Cuda(3)));
        assert!(matches!(parse_device("cuda:x"), Err(EvalError::BadDevice(_))));
        assert!(matches!(parse_device("tpu"), Err(EvalError::BadDevice(_))));
        assert_eq!(device_name(Device::Cuda(2)), "cuda:2");
    }

    #[test]
    fn missing_cuda_device_is_an_error_not_a_panic() {
        // Device 10_000 exists nowhere, with or without a GPU.
        let err = check(Device::Cuda(10_000)).expect_err("no machine has 10001 GPUs");
        assert!(matches!(err, EvalError::DeviceUnavailable { .. }), "{err}");
        assert!(check(Device::Cpu).is_ok());
    }

    #[test]
    fn workers_share_the_process_thread_setting() {
        let previous = tch::get_num_threads();
        // `--threads 1` in a worker process: its one training thread gets one thread, not every
        // core (the defect this guards against).
        tch::set_num_threads(1);
        assert_eq!(threads_per_worker(1), 1);
        assert_eq!(threads_per_worker(4), 1, "never zero");
        tch::set_num_threads(4);
        assert_eq!(threads_per_worker(1), 4);
        assert_eq!(threads_per_worker(2), 2);
        assert_eq!(threads_per_worker(3), 1);
        tch::set_num_threads(previous);
        assert!(threads_per_worker(1) >= 1);
    }
}
