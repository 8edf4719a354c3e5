//! One GPU: its context, a stream, the GEMMs ([`Lt`]), device buffers and kernel launches. Everything
//! runs in order on the one stream; the host waits only where it reads results back.

use super::gemm::{Choice as GemmChoice, Lt};
use super::libs;
use cudarc::driver::sys::{self as cu, CUdevice_attribute, CUdeviceptr};
use cudarc::driver::{CudaContext, result};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::Arc;

pub type GpuResult<T> = Result<T, String>;

pub(super) fn check<E: std::fmt::Debug>(what: &str, r: Result<(), E>) -> GpuResult<()> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

/// Memory on the device, freed on drop.
pub struct DeviceBuffer {
    ptr: CUdeviceptr,
    bytes: usize,
}

impl DeviceBuffer {
    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ptr != 0 {
            // SAFETY: allocated by `Gpu::alloc` and freed once; the stream is synchronized by then
            // (every step ends with a synchronizing copy back).
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}

/// From this CUDA version on, a graph keeps the programmatic edges of PDL launches captured into
/// it, and `cuGraphGetEdges_v2` (which counts them) exists.
const GRAPH_PDL_DRIVER: u32 = 12030;

/// cuBLASLt's workspace, passed to every GEMM so that GEMMs never allocate (a condition of
/// capturing them in a CUDA graph); Hopper's default size.
pub const BLAS_WORKSPACE: usize = 32 << 20;

pub struct Gpu {
    /// GEMMs; dropped before the workspace it uses (fields drop in order).
    lt: Lt,
    _blas_workspace: DeviceBuffer,
    pub ctx: Arc<CudaContext>,
    stream: cu::CUstream,
    /// Whether kernels are launched as programmatic dependents (sm_90 and later; see `launch`).
    pdl: Cell<bool>,
    pub name: String,
    /// The CUDA libraries loaded (`libs::load`): their files, the driver's CUDA version, NVRTC.
    pub libs: &'static libs::Loaded,
    pub arch: (i32, i32),
    pub sms: u32,
    /// Most dynamic shared memory one block may opt into, in bytes.
    pub max_shared: u32,
}

// SAFETY: the stream and cuBLASLt handle are used by one thread at a time (`&mut` through the
// executor), which binds the context first.
unsafe impl Send for Gpu {}

impl Gpu {
    /// Opens GPU `ordinal`, or says why not (no driver, no GPU, libraries missing).
    pub fn open(ordinal: usize) -> GpuResult<Self> {
        let loaded = libs::load()?;
        check("cuInit", result::init())?;
        let count = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
        if ordinal >= count.max(0) as usize {
            return Err(format!("GPU {ordinal} requested but {count} visible"));
        }
        let ctx =
            CudaContext::new(ordinal).map_err(|e| format!("cannot open GPU {ordinal}: {e:?}"))?;
        let name = ctx.name().unwrap_or_default();
        let arch = ctx
            .compute_capability()
            .map_err(|e| format!("compute capability: {e:?}"))?;
        let sms = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| format!("SM count: {e:?}"))? as u32;
        let max_shared = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            .map_err(|e| format!("shared memory size: {e:?}"))? as u32;
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(|e| format!("cuStreamCreate: {e:?}"))?;
        let blas_workspace = DeviceBuffer {
            // SAFETY: a plain allocation.
            ptr: unsafe { result::malloc_sync(BLAS_WORKSPACE) }
                .map_err(|e| format!("cuBLASLt workspace: {e:?}"))?,
            bytes: BLAS_WORKSPACE,
        };
        let lt = Lt::new(
            &loaded.blaslt,
            blas_workspace.ptr,
            BLAS_WORKSPACE,
            &format!("{name} {arch:?}"),
        )?;
        Ok(Self {
            lt,
            _blas_workspace: blas_workspace,
            ctx,
            stream,
            pdl: Cell::new(arch.0 >= 9),
            name,
            libs: loaded,
            arch,
            sms,
            max_shared,
        })
    }

    /// Makes this GPU current on the calling thread.
    pub fn bind(&self) -> GpuResult<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| format!("bind context: {e:?}"))
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> GpuResult<(usize, usize)> {
        result::mem_get_info().map_err(|e| format!("cuMemGetInfo: {e:?}"))
    }

    pub fn alloc(&self, bytes: usize) -> GpuResult<DeviceBuffer> {
        // SAFETY: a plain allocation of at least one byte.
        let ptr = unsafe { result::malloc_sync(bytes.max(1)) }
            .map_err(|e| format!("cannot allocate {bytes} bytes on the GPU: {e:?}"))?;
        Ok(DeviceBuffer { ptr, bytes })
    }

    /// A buffer of `bytes` zeros.
    pub fn alloc_zeroed(&self, bytes: usize) -> GpuResult<DeviceBuffer> {
        let buf = self.alloc(bytes)?;
        // SAFETY: `buf` holds `bytes` bytes.
        unsafe { result::memset_d8_sync(buf.ptr, 0, bytes) }
            .map_err(|e| format!("cuMemsetD8: {e:?}"))?;
        Ok(buf)
    }

    /// A buffer holding `data`.
    pub fn upload<T: Copy>(&self, data: &[T]) -> GpuResult<DeviceBuffer> {
        let buf = self.alloc(std::mem::size_of_val(data))?;
        self.copy_to(&buf, data)?;
        Ok(buf)
    }

    /// Copies `data` to the start of `buf` (which must hold it), in stream order.
    pub fn copy_to<T: Copy>(&self, buf: &DeviceBuffer, data: &[T]) -> GpuResult<()> {
        if std::mem::size_of_val(data) > buf.bytes {
            return Err(format!(
                "{} bytes do not fit a buffer of {}",
                std::mem::size_of_val(data),
                buf.bytes
            ));
        }
        // SAFETY: the destination holds the data; the source is pageable host memory, which the
        // driver stages before returning.
        check("cuMemcpyHtoDAsync", unsafe {
            result::memcpy_htod_async(buf.ptr, data, self.stream)
        })?;
        Ok(())
    }

    /// Copies `rows` rows of `cols` elements from `data` (rows packed) to `dst`, whose rows are
    /// `pitch` elements apart, in stream order.
    pub fn copy_rows_to<T: Copy>(
        &self,
        dst: CUdeviceptr,
        data: &[T],
        (rows, cols, pitch): (usize, usize, usize),
    ) -> GpuResult<()> {
        let size = std::mem::size_of::<T>();
        if data.len() < rows * cols || cols > pitch {
            return Err(format!("{rows} × {cols} of {} elements", data.len()));
        }
        if rows * cols == 0 {
            return Ok(());
        }
        let copy = cu::CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: 0,
            srcMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_HOST,
            srcHost: data.as_ptr().cast(),
            srcDevice: 0,
            srcArray: std::ptr::null_mut(),
            srcPitch: cols * size,
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_DEVICE,
            dstHost: std::ptr::null_mut(),
            dstDevice: dst,
            dstArray: std::ptr::null_mut(),
            dstPitch: pitch * size,
            WidthInBytes: cols * size,
            Height: rows,
        };
        // SAFETY: the source holds rows × cols elements; the caller's destination holds rows
        // rows of `pitch` elements. Pageable memory is staged before the call returns.
        check("cuMemcpy2DAsync", unsafe {
            cu::cuMemcpy2DAsync_v2(&copy, self.stream).result()
        })
    }

    /// Waits for the stream, then copies the start of `buf` into `out`.
    pub fn copy_from<T: Copy>(&self, buf: CUdeviceptr, out: &mut [T]) -> GpuResult<()> {
        // SAFETY: callers pass a buffer of at least `out`'s size.
        check("cuMemcpyDtoHAsync", unsafe {
            result::memcpy_dtoh_async(out, buf, self.stream)
        })?;
        self.sync()
    }

    pub fn sync(&self) -> GpuResult<()> {
        // SAFETY: our stream.
        check("cuStreamSynchronize", unsafe {
            result::stream::synchronize(self.stream)
        })
    }

    pub fn module(&self, cubin: &[u8]) -> GpuResult<cu::CUmodule> {
        // SAFETY: a CUBIN image from NVRTC, alive for the call.
        unsafe { result::module::load_data(cubin.as_ptr().cast()) }
            .map_err(|e| format!("cannot load the kernels: {e:?}"))
    }

    /// Launches `f` with `args`, pointers to each argument in the kernel's parameter order.
    ///
    /// # Safety
    /// `args` match the kernel's signature and every device pointer among them is valid for
    /// what the kernel reads and writes.
    pub unsafe fn launch(
        &self,
        f: cu::CUfunction,
        grid: (u32, u32, u32),
        block: u32,
        args: &mut [*mut c_void],
    ) -> GpuResult<()> {
        unsafe { self.launch_with_shared(f, grid, block, 0, args) }
    }

    /// [`Gpu::launch`] with `shared` bytes of dynamic shared memory.
    ///
    /// # Safety
    /// As for `launch`; more than 48 KiB needs [`Gpu::allow_shared`] on `f` first.
    pub unsafe fn launch_with_shared(
        &self,
        f: cu::CUfunction,
        grid: (u32, u32, u32),
        block: u32,
        shared: u32,
        args: &mut [*mut c_void],
    ) -> GpuResult<()> {
        // From sm_90 every kernel is launched as a programmatic dependent of the previous one
        // (see pdl_wait in kernels.cu): it may start while that one finishes.
        let mut pdl = cu::CUlaunchAttribute {
            id: cu::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            value: cu::CUlaunchAttributeValue {
                programmaticStreamSerializationAllowed: 1,
            },
        };
        let config = cu::CUlaunchConfig {
            gridDimX: grid.0,
            gridDimY: grid.1,
            gridDimZ: grid.2,
            blockDimX: block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: shared,
            hStream: self.stream,
            attrs: &mut pdl,
            numAttrs: u32::from(self.pdl.get()),
        };
        // SAFETY: the caller vouches for `f` and `args`; the config outlives the call.
        unsafe {
            cu::cuLaunchKernelEx(&config, f, args.as_mut_ptr(), std::ptr::null_mut())
                .result()
                .map_err(|e| format!("cuLaunchKernelEx: {e:?}"))
        }
    }

    pub fn stream(&self) -> cu::CUstream {
        self.stream
    }

    /// Whether kernels are launched as programmatic dependents: on where the GPU has them,
    /// unless turned off (a graph captured without them).
    pub fn pdl(&self) -> bool {
        self.pdl.get()
    }

    pub fn set_pdl(&self, on: bool) {
        self.pdl.set(on && self.arch.0 >= 9);
    }

    /// Whether CUDA graphs can hold PDL launches (the driver runs CUDA 12.3 or later, or did not
    /// say which it runs).
    pub fn graphs_keep_pdl(&self) -> bool {
        self.libs.driver.is_none_or(|v| v >= GRAPH_PDL_DRIVER)
    }

    /// Static shared memory `f` declares, in bytes: what a launch's dynamic shared memory must
    /// leave room for.
    pub fn static_shared(&self, f: cu::CUfunction) -> GpuResult<u32> {
        // SAFETY: `f` is a loaded kernel.
        let bytes = unsafe {
            result::function::get_function_attribute(
                f,
                cu::CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
            )
        }
        .map_err(|e| format!("cuFuncGetAttribute: {e:?}"))?;
        Ok(bytes as u32)
    }

    /// Blocks of `f` (with `block` threads and `shared` bytes of dynamic shared memory) that fit
    /// on one multiprocessor at once.
    pub fn resident_blocks(&self, f: cu::CUfunction, block: u32, shared: u32) -> GpuResult<u32> {
        let mut n = 0;
        // SAFETY: `f` is a loaded kernel; `n` an out-parameter.
        unsafe {
            cu::cuOccupancyMaxActiveBlocksPerMultiprocessor(
                &mut n,
                f,
                block as i32,
                shared as usize,
            )
            .result()
            .map_err(|e| format!("cuOccupancyMaxActiveBlocksPerMultiprocessor: {e:?}"))?;
        }
        Ok(n.max(1) as u32)
    }

    /// Lets `f` use up to `bytes` of dynamic shared memory.
    pub fn allow_shared(&self, f: cu::CUfunction, bytes: u32) -> GpuResult<()> {
        // SAFETY: `f` is a loaded kernel.
        check("cuFuncSetAttribute", unsafe {
            result::function::set_function_attribute(
                f,
                cu::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
        })
    }

    /// `y[t×n] = x[t×k] · w[n×k]ᵀ` (row-major bf16 inputs, f32 accumulate); `y` is bf16, or f32
    /// when `f32_out`. Through cuBLASLt, each shape's algorithm timed once ([`Lt`]).
    pub fn gemm(
        &self,
        x: CUdeviceptr,
        w: CUdeviceptr,
        y: CUdeviceptr,
        (t, n, k): (usize, usize, usize),
        f32_out: bool,
    ) -> GpuResult<()> {
        self.lt.gemm(self.stream, x, w, y, (t, n, k, f32_out))
    }

    /// The GEMM shapes met so far and how each one's algorithm was chosen.
    pub fn gemm_choices(&self) -> Vec<GemmChoice> {
        self.lt.choices()
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // SAFETY: created in `open`, destroyed once.
        unsafe {
            let _ = result::stream::synchronize(self.stream);
            let _ = result::stream::destroy(self.stream);
        }
    }
}

/// A pointer to one kernel argument, for `Gpu::launch`.
pub fn arg<T>(value: &T) -> *mut c_void {
    value as *const T as *mut c_void
}
