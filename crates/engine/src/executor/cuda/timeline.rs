//! A timeline of the kernels as they run, overlapped (programmatic dependent launches, graphs),
//! which profilers cannot show since they serialize kernels. Off by default; with
//! `TURBINE_CUDA_TIMELINE=N` the kernels are compiled with `TIMELINE=N` and every warp appends
//! one record when it leaves its kernel (kernels.cu): the kernel's source line, its grid, and its
//! start and end on the GPU's global timer. [`Timeline::read`] turns them into one span per grid.
//! The records cost registers and a global atomic per warp, so timings shift a little.

use super::device::{Gpu, GpuResult};
use cudarc::driver::result::module;
use cudarc::driver::sys::{CUdeviceptr, CUmodule};
use std::collections::BTreeMap;
use std::ffi::CString;

/// Records the kernels may keep (0: the timeline is off).
pub const TIMELINE_ENV: &str = "TURBINE_CUDA_TIMELINE";

/// `TimelineRecord` in kernels.cu: grid, start, end (u64), line, multiprocessor (u32).
const RECORD_WORDS: usize = 4;

/// The records' capacity asked for in the environment, if any.
pub fn capacity() -> Option<usize> {
    std::env::var(TIMELINE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
}

/// One launch: its kernel and the span of its warps (ns on the GPU's global timer).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub kernel: String,
    pub grid: u64,
    pub start: u64,
    pub end: u64,
    pub warps: usize,
    pub sms: usize,
}

pub struct Timeline {
    count: CUdeviceptr,
    records: CUdeviceptr,
    capacity: usize,
    /// (source line of a kernel's first line, kernel name), ascending.
    kernels: Vec<(u32, String)>,
}

impl Timeline {
    /// The module's record buffers; `source` is what it was compiled from.
    pub fn new(module: CUmodule, source: &str, capacity: usize) -> GpuResult<Self> {
        let global = |name: &str| -> GpuResult<CUdeviceptr> {
            let c = CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: `module` is loaded and never unloaded.
            unsafe { module::get_global(module, c) }
                .map(|(ptr, _)| ptr)
                .map_err(|e| format!("timeline buffer {name}: {e:?}"))
        };
        Ok(Self {
            count: global("timeline_count")?,
            records: global("timeline")?,
            capacity,
            kernels: kernel_lines(source),
        })
    }

    /// Forgets the records so far (in stream order).
    pub fn reset(&self, gpu: &Gpu) -> GpuResult<()> {
        gpu.copy_rows_to(self.count, &[0u32], (1, 1, 1))
    }

    /// The launches recorded since the last reset, by start.
    pub fn read(&self, gpu: &Gpu) -> GpuResult<Vec<Span>> {
        let mut count = [0u32];
        gpu.copy_from(self.count, &mut count)?;
        let n = (count[0] as usize).min(self.capacity);
        let mut words = vec![0u64; n * RECORD_WORDS];
        gpu.copy_from(self.records, &mut words)?;
        let mut grids: BTreeMap<u64, (Span, Vec<u32>)> = BTreeMap::new();
        for r in words.chunks_exact(RECORD_WORDS) {
            let (grid, start, end) = (r[0], r[1], r[2]);
            let (line, sm) = (r[3] as u32, (r[3] >> 32) as u32);
            let (span, sms) = grids.entry(grid).or_insert_with(|| {
                let span = Span {
                    kernel: kernel_at(&self.kernels, line),
                    grid,
                    start,
                    end,
                    warps: 0,
                    sms: 0,
                };
                (span, Vec::new())
            });
            span.start = span.start.min(start);
            span.end = span.end.max(end);
            span.warps += 1;
            sms.push(sm);
        }
        let mut spans: Vec<Span> = grids
            .into_values()
            .map(|(mut span, mut sms)| {
                sms.sort_unstable();
                sms.dedup();
                span.sms = sms.len();
                span
            })
            .collect();
        spans.sort_by_key(|s| s.start);
        Ok(spans)
    }
}

/// The line of each `extern "C" __global__ void` kernel in `source` (1-based, as `__LINE__`)
/// with its name, which follows the optional `__launch_bounds__(..)`.
fn kernel_lines(source: &str) -> Vec<(u32, String)> {
    const DECLARATION: &str = "extern \"C\" __global__ void";
    source
        .match_indices(DECLARATION)
        .map(|(at, _)| {
            let line = source[..at].matches('\n').count() as u32 + 1;
            let mut rest = source[at + DECLARATION.len()..].trim_start();
            if rest.starts_with("__launch_bounds__") {
                rest = rest.split_once(')').map_or("", |(_, after)| after);
            }
            let name = rest.split('(').next().unwrap_or("").trim();
            (line, name.to_string())
        })
        .collect()
}

/// The kernel whose declaration is the last one at or before `line`.
fn kernel_at(kernels: &[(u32, String)], line: u32) -> String {
    match kernels.partition_point(|(l, _)| *l <= line) {
        0 => format!("line {line}"),
        i => kernels[i - 1].1.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_named_by_the_kernel_declared_above_them() {
        let source = "// x\nextern \"C\" __global__ void embed(int* a) {\n    TIMELINE_SCOPE;\n}\n\
                      extern \"C\" __global__ void __launch_bounds__(128, 2)\n\
                      prefill(int* a,\n int b) {\n    TIMELINE_SCOPE;\n}\n";
        let kernels = kernel_lines(source);
        assert_eq!(
            kernels,
            vec![(2, "embed".to_string()), (5, "prefill".to_string())]
        );
        assert_eq!(kernel_at(&kernels, 3), "embed");
        assert_eq!(kernel_at(&kernels, 8), "prefill");
        assert_eq!(kernel_at(&kernels, 1), "line 1");
    }

    #[test]
    fn every_kernel_of_the_real_source_is_found() {
        let kernels = kernel_lines(super::super::kernels::SOURCE);
        let names: Vec<&str> = kernels.iter().map(|(_, n)| n.as_str()).collect();
        for expected in [
            "embed",
            "qkv_post",
            "gemv_add",
            "decode_attention_mma",
            "sample",
        ] {
            assert!(names.contains(&expected), "{expected} not in {names:?}");
        }
        assert_eq!(
            kernels.len(),
            super::super::kernels::SOURCE
                .matches("TIMELINE_SCOPE;")
                .count()
        );
    }
}
