"""TensorFlow in a worker: quiet import, thread pools sized to the actor, one precision switch.

Every model extractor (VGGish, musicnn) runs through these, so they agree on how threads and
bf16 are set. TensorFlow is imported inside the functions, so importing this module (and
`genreflow --help`) stays instant.

Precision: "bf16" turns on TensorFlow's oneDNN auto-mixed-precision graph rewrite
(convolutions and matmuls in bfloat16, fp32 in and out). The option is global to the
TensorFlow runtime of a process and is read when a function is *called*, so a model object
re-asserts its own precision before every call (`set_precision`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from genreflow.errors import ConfigError, ModelLoadError

PRECISIONS = ("fp32", "bf16")
_BF16_OPTION = "auto_mixed_precision_onednn_bfloat16"

_log = logging.getLogger(__name__)


def tf_module() -> Any:
    """Import TensorFlow with its C++ chatter turned down (only if the user has not chosen),
    without Keras: TensorFlow 2.21 imports Keras 3 eagerly (to register its optimizers for
    SavedModels that hold them) and Keras imports scikit-learn: 1.5 s of one core, holding the
    GIL the decode threads of the features pass need, for models that use neither. TensorFlow
    skips that step when Keras cannot be imported, and ``tf.keras`` stays a lazy loader that
    imports Keras on first use."""
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from genreflow.core.console import quiet_import

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    blocked = "keras" not in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True")
    if blocked:
        sys.modules["keras"] = None  # type: ignore[assignment]  # "import keras" raises ImportError
    try:
        return quiet_import("tensorflow")
    finally:
        if blocked and "keras" in sys.modules and sys.modules["keras"] is None:
            del sys.modules["keras"]


def configure_tf_threads(n: int) -> None:
    """Pin TensorFlow's intra- and inter-op pools to `n` threads.

    Ray actors each get a few CPUs; without this every actor spawns a pool the size of
    the machine and they oversubscribe the cores. TensorFlow accepts the setting only
    before it executes anything; a later call is ignored (logged at debug level).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads={n!r} must be a positive integer")
    tf = tf_module()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(int(n))
    except RuntimeError as exc:  # context already initialised
        _log.debug("TensorFlow threads already fixed; threads=%d ignored (%s)", n, exc)


def onednn_enabled(tf: Any) -> bool:
    """Whether TensorFlow runs its oneDNN (MKL) passes; without them the bf16 rewrite is
    silently skipped (measured: TF_ENABLE_ONEDNN_OPTS=0 gives bit-identical fp32 output)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # private module moved: fall back to the switch users flip
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def check_precision(precision: str) -> None:
    """Refuse an unresolved or unknown precision, and bf16 where the rewrite would silently not
    run (a feature set labelled bf16 must not hold fp32 rows)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not valid for the model; use fp32 or bf16 "
                          "(resolve 'auto' with genreflow.core.host.resolve_precision first)")
    if precision == "bf16" and not onednn_enabled(tf_module()):
        raise ModelLoadError(
            "precision bf16 needs TensorFlow's oneDNN optimizations, which are off in this process "
            f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '<unset>')}, or a TensorFlow "
            "build without oneDNN); unset TF_ENABLE_ONEDNN_OPTS or use precision fp32"
        )


def set_precision(precision: str) -> None:
    """Switch this process's TensorFlow to `precision` ("fp32" or "bf16").

    The grappler option is written only when it differs from the current value, because
    writing it resets TensorFlow's cached function-call options (about 2 ms per switch).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not valid for the model; use fp32 or bf16 "
                          "(resolve 'auto' with genreflow.core.host.resolve_precision first)")
    tf = tf_module()
    want = precision == "bf16"
    if bool(tf.config.optimizer.get_experimental_options().get(_BF16_OPTION, False)) != want:
        tf.config.optimizer.set_experimental_options({_BF16_OPTION: want})


def short_reason(exc: BaseException) -> str:
    """First line of an exception, bounded: the user needs the cause, not the stack."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    line = line.rstrip(".")
    if len(line) > 300:
        line = line[:297] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


# --- What a SavedModel may do: pure tensor ops only -------------------------------------------
# A SavedModel is code: its graph can read and write any file (ReadFile, WriteFile, SaveV2...),
# run Python (PyFunc) or print. Before its first call, every op of every function the loader
# or a call may run (the concrete functions named by its object graph, and all their callees)
# must be in this allow-list of side-effect-free tensor ops. The list is generous with math
# (VGGish's front end and network, the genreflow stand-in, Keras layers, control flow) and
# holds nothing that touches files, the network, Python or the console.
SAFE_OPS = frozenset("""
Const Identity IdentityN NoOp Placeholder PlaceholderWithDefault StopGradient PreventGradient Snapshot
EnsureShape CheckNumerics CheckNumericsV2 Assert ControlTrigger
PartitionedCall StatefulPartitionedCall If StatelessIf While StatelessWhile Case StatelessCase
Switch Merge Enter Exit NextIteration LoopCond RefSwitch RefMerge RefEnter RefExit RefNextIteration
VarHandleOp ReadVariableOp VariableShape VarIsInitializedOp ResourceGather ResourceGatherNd
AssignVariableOp AssignAddVariableOp AssignSubVariableOp DestroyResourceOp DisableCopyOnRead
Variable VariableV2 Assign AssignAdd AssignSub IsVariableInitialized
Shape ShapeN Size Rank Reshape Squeeze ExpandDims StridedSlice Slice Pack Unpack Concat ConcatV2 ConcatOffset
Split SplitV Tile Pad PadV2 MirrorPad Transpose ConjugateTranspose Reverse ReverseV2 ReverseSequence
Gather GatherV2 GatherNd ScatterNd TensorScatterUpdate TensorScatterAdd TensorScatterSub
TensorScatterMax TensorScatterMin Fill ZerosLike OnesLike Range LinSpace Cast Bitcast BroadcastTo
BroadcastArgs BroadcastGradientArgs Where Select SelectV2 OneHot Unique UniqueV2 InvertPermutation
Empty MatrixDiag MatrixDiagV2 MatrixDiagV3 MatrixDiagPart MatrixDiagPartV2 MatrixDiagPartV3
MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 MatrixBandPart Diag DiagPart SpaceToBatchND BatchToSpaceND
SpaceToDepth DepthToSpace ExtractImagePatches Roll SearchSorted UpperBound LowerBound
Add AddV2 AddN Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod TruncateDiv TruncateMod Mod Neg
Abs ComplexAbs Sqrt Rsqrt Square SquaredDifference Pow Exp Expm1 Log Log1p Sin Cos Tan Tanh Sigmoid
Sign Floor Ceil Round Rint Maximum Minimum Reciprocal Inv Atan Atan2 Asin Acos Asinh Acosh Atanh Sinh
Cosh Erf Erfc Erfinv Lgamma Digamma Xlogy Xdivy Xlog1py Greater GreaterEqual Less LessEqual Equal
NotEqual ApproximateEqual LogicalAnd LogicalOr LogicalNot IsNan IsInf IsFinite ClipByValue
Sum Mean Max Min Prod All Any ArgMax ArgMin Cumsum Cumprod CumulativeLogsumexp EuclideanNorm
MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum SparseMatMul Cross TopKV2
Complex Real Imag Conj Angle RFFT IRFFT RFFT2D IRFFT2D RFFT3D IRFFT3D FFT IFFT FFT2D IFFT2D FFT3D IFFT3D
BiasAdd BiasAddV1 Conv Conv2D Conv3D DepthwiseConv2dNative Conv2DBackpropInput Conv3DBackpropInputV2
MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Softmax
LogSoftmax FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 BatchNormWithGlobalNormalization LRN L2Loss
_FusedConv2D _FusedMatMul _FusedBatchNormEx _MklMatMul _MklConv2D
""".split())

_TF2_ONLY = ("it is a TensorFlow 1 SavedModel (no object graph), whose start-up ops cannot be "
             "checked; export it with TensorFlow 2 (tf.saved_model.save)")
MAX_GRAPH_BYTES = 1 << 30  # saved_model.pb; the real VGGish's is a few MB (the weights are apart)


def savedmodel_ops_problem(folder: str) -> str | None:
    """Why the SavedModel in ``folder`` may not run here, or None when every op it can run is safe.

    Walks the concrete functions named by the object graph (``__call__``, signatures, resource
    initialisers, save/restore functions of custom objects: everything ``tf.saved_model.load``
    or a call can run) and, recursively, every function they call (function-valued attributes
    and ops named after a library function). The saver functions that only the graph's own
    ``saver_def`` names (``SaveV2``, ``RestoreV2``) are never run by TensorFlow 2's loader,
    which restores the variables itself, so they are not walked. A graph file that cannot be
    read or parsed raises ValueError (the folder is damaged, not hostile).
    """
    tf_module()
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb, pbtxt = os.path.join(folder, "saved_model.pb"), os.path.join(folder, "saved_model.pbtxt")
    path = pb if os.path.isfile(pb) else pbtxt
    try:
        size = os.stat(path).st_size
        if size > MAX_GRAPH_BYTES:
            raise ValueError(f"{os.path.basename(path)} is {size} bytes, over the {MAX_GRAPH_BYTES}-byte limit for a graph")
        with open(path, "rb") as fh:
            data = fh.read(MAX_GRAPH_BYTES + 1)
        if path == pb:
            proto.ParseFromString(data)
        else:
            text_format.Parse(data.decode("utf-8"), proto)
    except (OSError, UnicodeDecodeError, message.DecodeError, text_format.ParseError, RecursionError) as exc:
        raise ValueError(f"{os.path.basename(path)} cannot be read as a SavedModel ({short_reason(exc)})") from exc
    if len(proto.meta_graphs) != 1 or not proto.meta_graphs[0].HasField("object_graph_def"):
        return _TF2_ONLY
    meta = proto.meta_graphs[0]
    library = {f.signature.name: f for f in meta.graph_def.library.function}
    objects = meta.object_graph_def
    todo = list(objects.concrete_functions.keys())
    for node in objects.nodes:
        kind = node.WhichOneof("kind")
        if kind == "function":
            todo.extend(node.function.concrete_functions)
        elif kind == "bare_concrete_function":
            todo.append(node.bare_concrete_function.concrete_function_name)
    seen: set[str] = set()
    while todo:  # iterative: a deep call chain is no RecursionError
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in library:
            return f"it names a function {name!r} that its graph does not define"
        for node in library[name].node_def:
            if node.op in library:
                todo.append(node.op)
            elif node.op not in SAFE_OPS:
                return f"its function {name!r} runs the op {node.op!r} (node {node.name!r}), which is not a pure tensor op"
            for value in node.attr.values():
                if value.HasField("func"):
                    todo.append(value.func.name)
                if value.HasField("list"):
                    todo.extend(f.name for f in value.list.func)
    return None
