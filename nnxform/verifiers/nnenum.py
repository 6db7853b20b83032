"""nnenum's profile: stanleybak/nnenum src/nnenum/onnx_network.py and src/nnenum/settings.py. nnenum.py's main()
tries load_onnx_network_optimized first (a chain of Add, Sub, Flatten, MatMul, Relu and Gemm nodes read into its own
layers) and on any failure load_onnx_network (the graph cut at each Relu, the parts between run by onnxruntime; every
op in ONNX_WHITELIST, none in ONNX_BLACKLIST)."""

from __future__ import annotations

from ..ir import Model, Node
from .profile import Blocker, Profile, chain_fix

#: settings.py ONNX_WHITELIST: load_onnx_network asserts every node's op is in it (and none in ONNX_BLACKLIST)
_WHITELIST = ("Add", "AveragePool", "Constant", "Concat", "Conv", "Flatten", "Gather", "Gemm", "MatMul", "Mul",
              "Reshape", "Relu", "Shape", "Sub", "Unsqueeze", "Slice", "Dropout")
_BLACKLIST = ("Atan", "MaxPool", "Sigmoid", "Tanh")  # settings.py: "unsupported nonlinear laters"


def _missing(node: Node) -> str:
    """load_onnx_network's two assertions, in its order."""
    if node.op in _BLACKLIST:
        return f"{node.op} is in nnenum's ONNX_BLACKLIST (settings.py), which load_onnx_network asserts against"
    return f"nnenum has no {node.op}: load_onnx_network asserts every op is in ONNX_WHITELIST (settings.py)"


def _graph(model: Model) -> list[Blocker]:
    """load_onnx_network: one output, at least one Relu, and the graph cut at each Relu into one chain of parts."""
    found = []
    if len(model.output_names) != 1:  # assert len(model.graph.output) == 1
        found.append(Blocker("", f"{len(model.output_names)} outputs: nnenum asserts a single output", None))
    relus = [n for n in model.nodes if n.op == "Relu"]
    if not relus:  # assert relus, "expected at least one relu layer in network"
        # canon --for writes a linear network (one affine layer after canon) as relu(y) − relu(−y)
        found.append(Blocker("", "no Relu: nnenum asserts at least one Relu layer", chain_fix("nnenum"),
                             structural=True))
    # each linear part runs from the previous Relu's output alone (stan_select_model_inputs_outputs)
    part = {model.input_name: model.input_name}
    expected = model.input_name
    for n in model.nodes:
        parts = list(dict.fromkeys(part.get(t) for t in model.data_inputs(n)))  # in input order (a set's varies)
        if n.op == "Relu":
            if parts != [expected]:
                found.append(Blocker(n.name, f"Relu node '{n.name}' does not follow the previous Relu: nnenum "
                                             "splits the network at each Relu into one chain", None, structural=True))
            expected = n.outputs[0]
            part[n.outputs[0]] = n.outputs[0]
            continue
        if len(parts) > 1:
            found.append(Blocker(n.name, f"{n.op} node '{n.name}' joins values from both sides of a Relu: nnenum "
                                         "splits the network at each Relu into one chain", None, structural=True))
        for t in n.outputs:
            part[t] = parts[0] if parts else None
    if model.output_names and part.get(model.output_names[0]) not in (expected, None):
        found.append(Blocker("", "the output does not follow the last Relu: nnenum splits the network at each Relu "
                                 "into one chain", None, structural=True))
    return found


def _optimized(model: Model) -> bool:
    """load_onnx_network_optimized reads ``model``: from the input, each tensor feeds one node, whose first input it
    is, down to the one output; Add/Sub/MatMul by an initializer, Flatten with its axis written as 1, a Relu after
    some layer, Gemm with three initializer inputs and alpha = beta = 1 (transB read either way)."""
    if len(model.output_names) != 1:
        return False
    current, layers = model.input_name, 0
    while current != model.output_names[0]:
        consumers = model.consumers(current)
        if len(consumers) != 1 or consumers[0].inputs[0] != current:  # find_node_with_input; input[0] asserted
            return False
        node = consumers[0]
        constants = [t in model.constants for t in node.inputs[1:]]
        if node.op in ("Add", "Sub", "MatMul"):
            ok = constants == [True]
        elif node.op == "Flatten":
            ok = node.attrs.get("axis") == 1 and list(node.attrs) == ["axis"]  # cur_node.attribute[0].i == 1
        elif node.op == "Relu":
            ok = layers > 0  # "expected previous layer before relu layer"
        elif node.op == "Gemm":
            ok = constants == [True, True] and set(node.attrs) <= {"alpha", "beta", "transB"} and \
                node.attrs.get("alpha", 1.0) == 1.0 and node.attrs.get("beta", 1.0) == 1.0 and \
                node.attrs.get("transB", 1) == 1
        else:
            ok = False  # assert False, "unsupported onnx op_type"
        if not ok or len(node.outputs) != 1:
            return False
        current, layers = node.outputs[0], layers + 1
    return True


NNENUM = Profile(
    name="nnenum",
    source="stanleybak/nnenum src/nnenum/onnx_network.py, src/nnenum/settings.py",
    operators={op: () for op in _WHITELIST},
    graph_checks=(_graph,),
    missing=_missing,
    first_loader=_optimized,
)
