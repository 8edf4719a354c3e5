//! CUDA graphs on the executor's stream: what a closure launches is captured, instantiated and
//! later replayed with one launch. Kernels launched as programmatic dependents are captured with
//! programmatic edges (CUDA 12.3 and later), which keep the overlap of PDL inside the graph; with
//! an older driver, graphs are captured without PDL (`Gpu::graphs_keep_pdl`).

use super::device::{Gpu, GpuResult};
use cudarc::driver::sys::{self as cu, CUgraph, CUgraphExec};

/// An instantiated graph, destroyed on drop.
pub struct Graph {
    exec: CUgraphExec,
    /// Kernel and copy nodes, and how many edges are programmatic (PDL kept in the graph), where
    /// the driver can count them (CUDA 12.3 and later).
    pub nodes: usize,
    pub programmatic_edges: Option<usize>,
}

// SAFETY: used by one thread at a time (through the executor's `&mut`), with its context bound.
unsafe impl Send for Graph {}

fn check(what: &str, r: cu::CUresult) -> GpuResult<()> {
    r.result().map_err(|e| format!("{what}: {e:?}"))
}

impl Graph {
    /// Captures what `work` launches on `gpu`'s stream (nothing runs) and instantiates it. The
    /// capture is ended even where `work` fails, so the stream stays usable.
    pub fn capture(gpu: &Gpu, work: impl FnOnce() -> GpuResult<()>) -> GpuResult<Self> {
        let stream = gpu.stream();
        let mode = cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        // SAFETY: our stream, not capturing.
        check("cuStreamBeginCapture", unsafe {
            cu::cuStreamBeginCapture_v2(stream, mode)
        })?;
        let worked = work();
        let mut graph: CUgraph = std::ptr::null_mut();
        // SAFETY: ends the capture begun above.
        let ended = check("cuStreamEndCapture", unsafe {
            cu::cuStreamEndCapture(stream, &mut graph)
        });
        let graph = Owned(graph);
        worked?;
        ended?;
        let nodes = graph.nodes()?;
        let programmatic_edges = match gpu.graphs_keep_pdl() {
            true => Some(graph.programmatic_edges()?),
            false => None,
        };
        let mut exec: CUgraphExec = std::ptr::null_mut();
        // SAFETY: a complete graph from the capture.
        check("cuGraphInstantiate", unsafe {
            cu::cuGraphInstantiateWithFlags(&mut exec, graph.0, 0)
        })?;
        Ok(Self {
            exec,
            nodes,
            programmatic_edges,
        })
    }

    /// Replays the graph on `gpu`'s stream.
    pub fn launch(&self, gpu: &Gpu) -> GpuResult<()> {
        // SAFETY: an instantiated graph whose buffers outlive it (see `graphs`).
        check("cuGraphLaunch", unsafe {
            cu::cuGraphLaunch(self.exec, gpu.stream())
        })
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: instantiated in `capture`, destroyed once.
        let _ = unsafe { cu::cuGraphExecDestroy(self.exec) };
    }
}

/// A captured graph before instantiation, destroyed on drop.
struct Owned(CUgraph);

impl Owned {
    fn nodes(&self) -> GpuResult<usize> {
        let mut nodes = 0usize;
        // SAFETY: a size query on a valid graph.
        check("cuGraphGetNodes", unsafe {
            cu::cuGraphGetNodes(self.0, std::ptr::null_mut(), &mut nodes)
        })?;
        Ok(nodes)
    }

    /// How many edges are programmatic (needs a CUDA 12.3 driver: `cuGraphGetEdges_v2`).
    fn programmatic_edges(&self) -> GpuResult<usize> {
        let mut edges = 0usize;
        let (null, no_data) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: a size query on a valid graph.
        check("cuGraphGetEdges", unsafe {
            cu::cuGraphGetEdges_v2(self.0, null, null, no_data, &mut edges)
        })?;
        let mut from = vec![std::ptr::null_mut(); edges];
        let mut to = vec![std::ptr::null_mut(); edges];
        // SAFETY: all-zero is a valid edge (plain bytes).
        let mut data = vec![unsafe { std::mem::zeroed::<cu::CUgraphEdgeData>() }; edges];
        // SAFETY: the arrays hold `edges` entries each.
        check("cuGraphGetEdges", unsafe {
            cu::cuGraphGetEdges_v2(
                self.0,
                from.as_mut_ptr(),
                to.as_mut_ptr(),
                data.as_mut_ptr(),
                &mut edges,
            )
        })?;
        let programmatic = cu::CUgraphDependencyType::CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC as u8;
        let n = data[..edges]
            .iter()
            .filter(|d| d.type_ == programmatic)
            .count();
        Ok(n)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the graph from the capture, destroyed once (the instance keeps its own copy).
            let _ = unsafe { cu::cuGraphDestroy(self.0) };
        }
    }
}
