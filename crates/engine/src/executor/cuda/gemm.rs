//! GEMMs through cuBLASLt, each shape's algorithm chosen once by timing (once per machine: the
//! choices are kept on disk, `gemm_cache`).
//!
//! cuBLAS's own choice for a shape is its heuristic's first guess; on the few-token shapes of
//! batched decode (memory-bound, 8-256 rows against 4096-wide weights) that guess was measured at
//! 54-77% of DRAM bandwidth (timing the candidates gained 0.5-2% on an H100's decode steps). Here
//! the first time a shape runs outside a graph capture, up to [`CANDIDATES`] of cuBLASLt's
//! heuristic algorithms are each run [`TIMED_RUNS`] times and the fastest is kept for good, so a
//! shape always runs the same kernel (graph replays equal eager steps bit for bit), in this process
//! and, through the cache, in later ones. A shape first met inside a capture (not expected: graphs
//! capture on a shape's second step) takes the choice kept on disk, else the heuristic's first.
//! Prefill shapes (many rows) are not timed: every chunk length is a new shape, and the heuristic
//! does well on compute-bound ones.

use super::compile::cache_dir;
use super::device::{GpuResult, check};
use super::gemm_cache::GemmCache;
use super::symbols::BlasLt;
use cudarc::cublaslt::sys::{
    cublasComputeType_t, cublasLtHandle_t, cublasLtMatmulAlgo_t, cublasLtMatmulDesc_t,
    cublasLtMatmulDescAttributes_t, cublasLtMatmulHeuristicResult_t,
    cublasLtMatmulPreferenceAttributes_t, cublasLtMatrixLayout_t, cublasStatus_t, cudaDataType,
};
use cudarc::driver::result as drv;
use cudarc::driver::sys::{CUdeviceptr, CUstream, CUstreamCaptureStatus};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::time::Instant;

/// Heuristic candidates timed per shape.
const CANDIDATES: usize = 8;
/// Runs per candidate (after one warm-up run).
const TIMED_RUNS: usize = 3;
/// Shapes with more rows than this take the heuristic's first choice untimed.
const TIMED_MAX_ROWS: usize = 256;

/// cuBLAS's `CUBLAS_OP_T` (cudarc's cuBLASLt bindings do not carry `cublasOperation_t`).
const OP_T: i32 = 1;

/// `(t, n, k, f32_out)` of [`Lt::gemm`].
pub type Shape = (usize, usize, usize, bool);

/// How a shape's algorithm was chosen: each heuristic candidate's mean time in µs (None where
/// it failed to run; empty where none was timed, as where the choice came from the cache) and
/// the index of the one kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub shape: Shape,
    pub candidates_us: Vec<Option<f64>>,
    pub chosen: usize,
}

/// One shape's descriptors and chosen algorithm.
struct Plan {
    blaslt: &'static BlasLt,
    desc: cublasLtMatmulDesc_t,
    /// Layouts of the weights, the activations and the output.
    layouts: [cublasLtMatrixLayout_t; 3],
    algo: cublasLtMatmulAlgo_t,
    choice: Choice,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created in `Lt::plan` and destroyed once.
        unsafe {
            let _ = (self.blaslt.desc_destroy)(self.desc);
            for l in self.layouts {
                let _ = (self.blaslt.layout_destroy)(l);
            }
        }
    }
}

/// A cuBLASLt handle, the workspace it may use and the plans made so far.
pub struct Lt {
    blaslt: &'static BlasLt,
    handle: cublasLtHandle_t,
    workspace: CUdeviceptr,
    workspace_bytes: usize,
    plans: RefCell<HashMap<Shape, Plan>>,
    cache: RefCell<GemmCache>,
}

impl Lt {
    /// `workspace` (`workspace_bytes` long) must outlive the handle and not be used by anything
    /// running concurrently on another stream. `gpu` names the GPU model (the timed choices are
    /// kept per model).
    pub fn new(
        blaslt: &'static BlasLt,
        workspace: CUdeviceptr,
        workspace_bytes: usize,
        gpu: &str,
    ) -> GpuResult<Self> {
        let mut handle: cublasLtHandle_t = std::ptr::null_mut();
        // SAFETY: a plain out-parameter.
        check(
            "cublasLtCreate",
            unsafe { (blaslt.create)(&mut handle) }.result(),
        )?;
        // SAFETY: a plain query of the loaded library.
        let version = unsafe { (blaslt.version)() };
        let dir = cache_dir(|k| std::env::var(k).ok());
        Ok(Self {
            blaslt,
            handle,
            workspace,
            workspace_bytes,
            plans: RefCell::new(HashMap::new()),
            cache: RefCell::new(GemmCache::open(
                dir.as_deref(),
                gpu,
                version,
                workspace_bytes,
            )),
        })
    }

    /// `y[t×n] = x[t×k] · w[n×k]ᵀ` (row-major bf16 inputs, f32 accumulate) on `stream`; `y` is
    /// bf16, or f32 when `f32_out`.
    pub fn gemm(
        &self,
        stream: CUstream,
        x: CUdeviceptr,
        w: CUdeviceptr,
        y: CUdeviceptr,
        shape: Shape,
    ) -> GpuResult<()> {
        if !self.plans.borrow().contains_key(&shape) {
            let plan = self.plan(stream, x, w, y, shape)?;
            self.plans.borrow_mut().insert(shape, plan);
        }
        let plans = self.plans.borrow();
        let plan = &plans[&shape];
        self.run(stream, plan, &plan.algo, x, w, y)
    }

    /// Every shape met so far and how its algorithm was chosen, by shape.
    pub fn choices(&self) -> Vec<Choice> {
        let mut choices: Vec<Choice> = self
            .plans
            .borrow()
            .values()
            .map(|p| p.choice.clone())
            .collect();
        choices.sort_by_key(|c| c.shape);
        choices
    }

    fn run(
        &self,
        stream: CUstream,
        plan: &Plan,
        algo: &cublasLtMatmulAlgo_t,
        x: CUdeviceptr,
        w: CUdeviceptr,
        y: CUdeviceptr,
    ) -> GpuResult<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let [wl, xl, yl] = plan.layouts;
        // Column-major view: yᵀ (n×t) = w (k×n, transposed) · xᵀ (k×t).
        // SAFETY: the caller's buffers hold t×k, n×k and t×n elements, as the layouts say; the
        // workspace is ours on this stream.
        check("cublasLtMatmul", unsafe {
            (self.blaslt.matmul)(
                self.handle,
                plan.desc,
                (&alpha as *const f32).cast(),
                w as *const c_void,
                wl,
                x as *const c_void,
                xl,
                (&beta as *const f32).cast(),
                y as *const c_void,
                yl,
                y as *mut c_void,
                yl,
                algo,
                self.workspace as *mut c_void,
                self.workspace_bytes,
                stream as _,
            )
            .result()
        })
    }

    /// Descriptors for `shape` and its algorithm (see the module documentation). Timing runs
    /// write `y`, which the caller's run then overwrites.
    fn plan(
        &self,
        stream: CUstream,
        x: CUdeviceptr,
        w: CUdeviceptr,
        y: CUdeviceptr,
        (t, n, k, f32_out): Shape,
    ) -> GpuResult<Plan> {
        let bf16 = cudaDataType::CUDA_R_16BF;
        let out = if f32_out {
            cudaDataType::CUDA_R_32F
        } else {
            bf16
        };
        let blaslt = self.blaslt;
        let mut desc: cublasLtMatmulDesc_t = std::ptr::null_mut();
        // SAFETY: a plain out-parameter.
        check("cublasLtMatmulDescCreate", unsafe {
            (blaslt.desc_create)(
                &mut desc,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cudaDataType::CUDA_R_32F,
            )
            .result()
        })?;
        let layout = |dtype, rows: usize, cols: usize| {
            let mut layout: cublasLtMatrixLayout_t = std::ptr::null_mut();
            // SAFETY: a plain out-parameter.
            check("cublasLtMatrixLayoutCreate", unsafe {
                (blaslt.layout_create)(&mut layout, dtype, rows as u64, cols as u64, rows as i64)
                    .result()
            })
            .map(|()| layout)
        };
        let mut plan = Plan {
            blaslt,
            desc,
            layouts: [layout(bf16, k, n)?, layout(bf16, k, t)?, layout(out, n, t)?],
            algo: cublasLtMatmulAlgo_t { data: [0; 8] },
            choice: Choice {
                shape: (t, n, k, f32_out),
                candidates_us: Vec::new(),
                chosen: 0,
            },
        };
        // SAFETY: a valid descriptor; the attribute is a `cublasOperation_t` (an `i32`).
        check("cublasLtMatmulDescSetAttribute", unsafe {
            (blaslt.desc_set)(
                desc,
                cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&OP_T as *const i32).cast(),
                std::mem::size_of::<i32>(),
            )
            .result()
        })?;
        let candidates = self.candidates(&plan)?;
        // SAFETY: the stream is valid.
        let capturing = unsafe { drv::stream::is_capturing(stream as _) }
            .map_err(|e| format!("cuStreamIsCapturing: {e:?}"))?
            != CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
        plan.algo = candidates[0];
        // Timed before on this machine: the same choice, if the heuristic still offers it (also
        // inside a capture, where nothing can be timed).
        let shape = plan.choice.shape;
        let kept = self.cache.borrow().get(shape);
        if let Some(i) = kept.and_then(|words| candidates.iter().position(|a| a.data == words)) {
            plan.algo = candidates[i];
            plan.choice.chosen = i;
            return Ok(plan);
        }
        if capturing || t > TIMED_MAX_ROWS || candidates.len() == 1 {
            return Ok(plan);
        }
        let mut best = f64::INFINITY;
        for (i, algo) in candidates.iter().enumerate() {
            // A candidate that fails to run (resources, alignment) is skipped.
            if self.run(stream, &plan, algo, x, w, y).is_err() {
                plan.choice.candidates_us.push(None);
                continue;
            }
            synchronize(stream)?;
            let start = Instant::now();
            for _ in 0..TIMED_RUNS {
                self.run(stream, &plan, algo, x, w, y)?;
            }
            synchronize(stream)?;
            let secs = start.elapsed().as_secs_f64();
            plan.choice
                .candidates_us
                .push(Some(secs / TIMED_RUNS as f64 * 1e6));
            if secs < best {
                best = secs;
                plan.algo = *algo;
                plan.choice.chosen = i;
            }
        }
        self.cache.borrow_mut().put(shape, plan.algo.data);
        Ok(plan)
    }

    /// Up to [`CANDIDATES`] algorithms for the plan, best guess first.
    fn candidates(&self, plan: &Plan) -> GpuResult<Vec<cublasLtMatmulAlgo_t>> {
        let blaslt = self.blaslt;
        let mut pref = std::ptr::null_mut();
        // SAFETY: a plain out-parameter.
        check("cublasLtMatmulPreferenceCreate", unsafe {
            (blaslt.pref_create)(&mut pref).result()
        })?;
        let bytes = self.workspace_bytes;
        let [wl, xl, yl] = plan.layouts;
        let mut results = [cublasLtMatmulHeuristicResult_t {
            algo: cublasLtMatmulAlgo_t { data: [0; 8] },
            workspaceSize: 0,
            state: cublasStatus_t::CUBLAS_STATUS_SUCCESS,
            wavesCount: 0.0,
            reserved: [0; 4],
        }; CANDIDATES];
        let mut count = 0;
        // SAFETY: valid handle, descriptors and preference; `results` holds CANDIDATES entries.
        let status = unsafe {
            let set = (blaslt.pref_set)(
                pref,
                cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&bytes as *const usize).cast(),
                std::mem::size_of::<usize>(),
            )
            .result();
            let found = set.and_then(|()| {
                (blaslt.heuristic)(
                    self.handle,
                    plan.desc,
                    wl,
                    xl,
                    yl,
                    yl,
                    pref,
                    CANDIDATES as i32,
                    results.as_mut_ptr(),
                    &mut count,
                )
                .result()
            });
            let _ = (blaslt.pref_destroy)(pref);
            found
        };
        check("cublasLtMatmulAlgoGetHeuristic", status)?;
        let found: Vec<_> = results[..count.max(0) as usize]
            .iter()
            .filter(|r| r.state == cublasStatus_t::CUBLAS_STATUS_SUCCESS)
            .map(|r| r.algo)
            .collect();
        if found.is_empty() {
            return Err("cuBLASLt has no algorithm for a GEMM shape".into());
        }
        Ok(found)
    }
}

fn synchronize(stream: CUstream) -> GpuResult<()> {
    // SAFETY: the stream is valid.
    check("cuStreamSynchronize", unsafe {
        drv::stream::synchronize(stream)
    })
}

impl Drop for Lt {
    fn drop(&mut self) {
        self.plans.borrow_mut().clear();
        // SAFETY: created in `new`, destroyed once, after its plans.
        let _ = unsafe { (self.blaslt.destroy)(self.handle) };
    }
}
