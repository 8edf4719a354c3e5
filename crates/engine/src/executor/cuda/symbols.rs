//! The NVRTC and cuBLASLt functions the executor calls, looked up in the very files `libs`
//! chose. cudarc would look each library up by plain name on its own (`libnvrtc.so` first, then
//! `libnvrtc.so.13`, then `.12`), and so take whatever the dynamic loader's path offers first:
//! another CUDA version than the chosen one wherever a toolkit of that version is on the path.
//! cudarc still provides the types, and the driver API (one libcuda per machine).

use cudarc::cublaslt::sys::{
    cublasComputeType_t, cublasLtHandle_t, cublasLtMatmulAlgo_t, cublasLtMatmulDesc_t,
    cublasLtMatmulDescAttributes_t, cublasLtMatmulHeuristicResult_t, cublasLtMatmulPreference_t,
    cublasLtMatmulPreferenceAttributes_t, cublasLtMatrixLayout_t, cublasStatus_t, cudaDataType,
    cudaStream_t,
};
use cudarc::nvrtc::sys::{nvrtcProgram, nvrtcResult};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void};

/// A struct of a library's functions (C signatures as in the vendor's header) that keeps the
/// library loaded, and its `load`, which looks every function up.
macro_rules! functions {
    ($(#[$doc:meta])* $name:ident {
        $($field:ident = $symbol:literal: fn($($arg:ty),*) -> $ret:ty;)*
    }) => {
        $(#[$doc])*
        pub struct $name {
            $(pub $field: unsafe extern "C" fn($($arg),*) -> $ret,)*
            /// Keeps the functions above loaded.
            _lib: Library,
        }

        impl $name {
            /// Every function from `lib` (`file` names it in the error); a missing one is an
            /// error naming it, where cudarc would panic at its first call.
            pub fn load(lib: Library, file: &str) -> Result<Self, String> {
                // SAFETY: each symbol has the signature declared for it above; the pointers are
                // used only while `_lib` keeps the library loaded.
                unsafe {
                    Ok(Self {
                        $($field: *lib
                            .get::<unsafe extern "C" fn($($arg),*) -> $ret>(
                                concat!($symbol, "\0").as_bytes(),
                            )
                            .map_err(|e| format!("{file} has no {}: {e}", $symbol))?,)*
                        _lib: lib,
                    })
                }
            }
        }
    };
}

functions! {
    /// NVRTC: CUDA C to CUBIN.
    Nvrtc {
        version = "nvrtcVersion": fn(*mut c_int, *mut c_int) -> nvrtcResult;
        create_program = "nvrtcCreateProgram": fn(
            *mut nvrtcProgram,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char
        ) -> nvrtcResult;
        compile_program = "nvrtcCompileProgram":
            fn(nvrtcProgram, c_int, *const *const c_char) -> nvrtcResult;
        program_log_size = "nvrtcGetProgramLogSize": fn(nvrtcProgram, *mut usize) -> nvrtcResult;
        program_log = "nvrtcGetProgramLog": fn(nvrtcProgram, *mut c_char) -> nvrtcResult;
        cubin_size = "nvrtcGetCUBINSize": fn(nvrtcProgram, *mut usize) -> nvrtcResult;
        cubin = "nvrtcGetCUBIN": fn(nvrtcProgram, *mut c_char) -> nvrtcResult;
        destroy_program = "nvrtcDestroyProgram": fn(*mut nvrtcProgram) -> nvrtcResult;
    }
}

functions! {
    /// cuBLASLt: the GEMMs.
    BlasLt {
        create = "cublasLtCreate": fn(*mut cublasLtHandle_t) -> cublasStatus_t;
        destroy = "cublasLtDestroy": fn(cublasLtHandle_t) -> cublasStatus_t;
        version = "cublasLtGetVersion": fn() -> usize;
        desc_create = "cublasLtMatmulDescCreate":
            fn(*mut cublasLtMatmulDesc_t, cublasComputeType_t, cudaDataType) -> cublasStatus_t;
        desc_destroy = "cublasLtMatmulDescDestroy": fn(cublasLtMatmulDesc_t) -> cublasStatus_t;
        desc_set = "cublasLtMatmulDescSetAttribute": fn(
            cublasLtMatmulDesc_t,
            cublasLtMatmulDescAttributes_t,
            *const c_void,
            usize
        ) -> cublasStatus_t;
        layout_create = "cublasLtMatrixLayoutCreate":
            fn(*mut cublasLtMatrixLayout_t, cudaDataType, u64, u64, i64) -> cublasStatus_t;
        layout_destroy = "cublasLtMatrixLayoutDestroy":
            fn(cublasLtMatrixLayout_t) -> cublasStatus_t;
        pref_create = "cublasLtMatmulPreferenceCreate":
            fn(*mut cublasLtMatmulPreference_t) -> cublasStatus_t;
        pref_destroy = "cublasLtMatmulPreferenceDestroy":
            fn(cublasLtMatmulPreference_t) -> cublasStatus_t;
        pref_set = "cublasLtMatmulPreferenceSetAttribute": fn(
            cublasLtMatmulPreference_t,
            cublasLtMatmulPreferenceAttributes_t,
            *const c_void,
            usize
        ) -> cublasStatus_t;
        heuristic = "cublasLtMatmulAlgoGetHeuristic": fn(
            cublasLtHandle_t,
            cublasLtMatmulDesc_t,
            cublasLtMatrixLayout_t,
            cublasLtMatrixLayout_t,
            cublasLtMatrixLayout_t,
            cublasLtMatrixLayout_t,
            cublasLtMatmulPreference_t,
            c_int,
            *mut cublasLtMatmulHeuristicResult_t,
            *mut c_int
        ) -> cublasStatus_t;
        matmul = "cublasLtMatmul": fn(
            cublasLtHandle_t,
            cublasLtMatmulDesc_t,
            *const c_void,
            *const c_void,
            cublasLtMatrixLayout_t,
            *const c_void,
            cublasLtMatrixLayout_t,
            *const c_void,
            *const c_void,
            cublasLtMatrixLayout_t,
            *mut c_void,
            cublasLtMatrixLayout_t,
            *const cublasLtMatmulAlgo_t,
            *mut c_void,
            usize,
            cudaStream_t
        ) -> cublasStatus_t;
    }
}
