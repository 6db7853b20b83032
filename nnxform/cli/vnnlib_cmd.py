"""``nnxform vnnlib``: write a VNN-LIB property (ε-equivalence, robustness or output bounds) for one network."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import NnxformError
from ..fileio import read_text
from ..ir import Model, load
from ..vnnlib import (bounds_property, equivalence_property, instances_csv, instances_csv_lines, normalize,
                      robustness_property)
from . import summary
from .application import app
from .common import CommandOutput, DomainOptions, bounded, with_domain
from .domain_options import is_file_value, option_values


class Property(str, Enum):
    """The kinds of property `nnxform vnnlib` writes."""

    equivalence = "equivalence"
    robustness = "robustness"
    bounds = "bounds"


_ONLY_FOR = {"--equiv-eps": Property.equivalence, "--differences": Property.equivalence,
             "--label": Property.robustness, "--output-lower": Property.bounds, "--output-upper": Property.bounds}


def _output_size(net: Model) -> int:
    """The number of elements of the network's (one) output: the Y_j of its properties."""
    return int(np.prod(net.shapes()[net.output_name], dtype=np.int64))


@app.command(short_help=summary("vnnlib"),
             help="Write a VNN-LIB property for MODEL on the input box (which must be given). Like every VNN-LIB "
                  "file it states the UNSAFE region, so 'unsat' from a verifier proves the property: "
                  "equivalence — some |Y_j| >= --equiv-eps among the first --differences outputs (for a network "
                  "from `nnxform merge`, unsat proves |f_A − f_B| < ε); robustness — some Y_j >= Y_label, j != "
                  "--label (unsat proves the argmax stays the label); bounds — some Y_j <= --output-lower or "
                  "Y_j >= --output-upper (unsat proves lower < Y < upper). X_i and Y_j index the flattened input "
                  "and output in row-major order; numbers are written exactly.")
@with_domain
def vnnlib(
    model: str = typer.Argument(..., help="ONNX network the property is about."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the VNN-LIB property."),
    prop: Property = typer.Option(..., "--property", help="Which property to write."),
    equiv_eps: Optional[float] = typer.Option(None, "--equiv-eps", help="equivalence: ε (> 0).",
                                              callback=bounded(0, above=True)),
    differences: Optional[int] = typer.Option(
        None, "--differences", help="equivalence: only the first K outputs are differences (default: all; a "
                                    "`merge --keep-outputs` network has a third of its outputs as differences).",
        callback=bounded(1)),
    label: Optional[int] = typer.Option(None, "--label", help="robustness: the output that must stay the argmax.",
                                        callback=bounded(0)),
    output_lower: Optional[str] = typer.Option(None, "--output-lower", help="bounds: lower bound (number or .npy)."),
    output_upper: Optional[str] = typer.Option(None, "--output-upper", help="bounds: upper bound (number or .npy)."),
    instances: Optional[str] = typer.Option(None, "--instances", help="Also add 'model,property,timeout' to this CSV."),
    timeout: float = typer.Option(60.0, "--timeout", help="Timeout in seconds written in instances.csv (> 0).",
                                  callback=bounded(0, above=True)),
    domain: DomainOptions = None,
) -> None:
    given = {"--equiv-eps": equiv_eps, "--differences": differences, "--label": label,
             "--output-lower": output_lower, "--output-upper": output_upper}
    stray = next((name for name, value in given.items() if value is not None and _ONLY_FOR[name] != prop), None)
    if stray:
        raise NnxformError(f"{stray} is for --property {_ONLY_FOR[stray].value}, not {prop.value}")
    bound_files = [v for v in (output_lower, output_upper) if v is not None and is_file_value(v)]
    out = CommandOutput([model, *domain.files(), *bound_files], ("-o", output), ("--instances", instances))
    csv_text, line = (None, None) if instances is None else instances_csv(instances, model, output, timeout)
    net = load(model)
    box = domain.box(net, default=False)
    if box is None:
        raise NnxformError("give the input box: --lower/--upper, --center/--eps or --vnnlib")
    n_outputs = _output_size(net)
    if prop is Property.equivalence:
        if equiv_eps is None:
            raise NnxformError("--property equivalence needs --equiv-eps")
        text = equivalence_property(box, n_outputs, equiv_eps, differences)
    elif prop is Property.robustness:
        if label is None:
            raise NnxformError("--property robustness needs --label")
        text = robustness_property(box, n_outputs, label)
    else:
        sides = (("--output-lower", output_lower), ("--output-upper", output_upper))
        text = bounds_property(box, *(None if v is None else option_values(name, v, n_outputs) for name, v in sides))
    out.write(files={output: text, instances: csv_text})
    out.say(f"vnnlib: {prop.value} property for {model} ({box.size} inputs, {n_outputs} outputs) -> {output}")
    if line is not None:
        out.say(f"  {instances}: {line}")


@app.command("vnnlib-normalize", short_help=summary("vnnlib-normalize"),
             help="Rewrite any VNN-LIB 1.0 property in the form the simplest parsers read, with the same meaning: "
                  "the declarations, one (assert (<= X_i v)) / (assert (>= X_i v)) per input bound, and the output "
                  "condition as one (assert (or (and ...) ...)) (pynever refuses VNN-COMP's top-level "
                  "(assert (>= Y_0 ...)) as 'mixed input and output variables'). A disjunction over input boxes "
                  "(ACAS Xu prop_6) becomes one file per box, OUT's name with _0, _1, … before its suffix, and with "
                  "--onnx their lines in an instances.csv beside them (the property must then declare as many X_i "
                  "as the network has inputs and, if it declares Y_j, as many as it has outputs). (A command of its "
                  "own: `nnxform vnnlib` takes a model as its argument.)")
def vnnlib_normalize(
    source: str = typer.Argument(..., help="VNN-LIB file to normalise."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the normalised property."),
    onnx: Optional[str] = typer.Option(None, "--onnx", help="Write an instances.csv beside OUT naming this network."),
    timeout: float = typer.Option(60.0, "--timeout", help="Timeout in seconds written in instances.csv.",
                                  callback=bounded(0, above=True)),
) -> None:
    net = None if onnx is None else load(onnx)
    sizes = None if net is None else (net.input_size, _output_size(net))
    files = normalize(read_text(source, "VNN-LIB"), source, sizes)
    target = Path(output)
    paths = [str(target)] if len(files) == 1 else [str(target.with_name(f"{target.stem}_{k}{target.suffix}"))
                                                 for k in range(len(files))]
    csv = str(target.parent / "instances.csv") if onnx else None
    out = CommandOutput([source, onnx], *(("-o", path) for path in paths), ("instances.csv", csv))
    content, lines = (None, []) if csv is None else instances_csv_lines(csv, onnx, paths, timeout)
    out.write(files={**dict(zip(paths, files)), csv: content})
    out.say(f"vnnlib-normalize: {source} -> {', '.join(paths)} "
            f"({len(files)} input box{'es' if len(files) > 1 else ''})")
    for line in lines:
        out.say(f"  {csv}: {line}")
