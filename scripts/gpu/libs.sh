# Sourced by the GPU scripts: where the CUDA libraries are, for turbine's loader. It also searches
# the usual places itself; this adds the Python environment's nvidia/*/lib (PyTorch's wheels).
site="$(python3 -c 'import site; print(":".join(site.getsitepackages()))' 2>/dev/null || true)"
dirs=""
IFS=: read -ra roots <<< "$site"
for root in "${roots[@]}"; do
  for lib in "$root"/nvidia/*/lib; do [ -d "$lib" ] && dirs="$dirs:$lib"; done
done
export TURBINE_CUDA_LIB_DIR="${TURBINE_CUDA_LIB_DIR:-}${dirs}"
export TURBINE_CUDA_CACHE="${TURBINE_CUDA_CACHE:-/tmp/turbine-cubin}"
