"""What a classification says: per ReLU layer each neuron's status (``ACTIVE``, ``INACTIVE``, ``UNSTABLE``,
``UNDECIDED``), the stages that settled them, the witnesses of instability, and the JSON form (``Stability``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analyzers.result import ACTIVE, INACTIVE, UNSTABLE
from ..domain import Box
from ..errors import NnxformError
from ..ir import Model

UNDECIDED = 2
STATUS_NAMES = {ACTIVE: "active", INACTIVE: "inactive", UNSTABLE: "unstable", UNDECIDED: "undecided"}

@dataclass
class Stage:
    """One step of the classification: how long it took and how many neurons it settled."""

    name: str
    seconds: float
    settled: int
    note: str = ""


@dataclass
class LayerStability:
    """The status of every neuron of one ReLU node (flat, row-major): ACTIVE, INACTIVE, UNSTABLE or UNDECIDED."""

    node: str
    status: np.ndarray
    channels: int = 0  # of a ReLU on convolution outputs ``[1, C, *positions]``: C (0 for dense layers)

    @property
    def size(self) -> int:
        return int(self.status.size)

    def channel_status(self) -> np.ndarray | None:
        """Per channel: INACTIVE when every position is stably inactive (``compress`` removes the channel), ACTIVE
        when every position is stably active, else UNSTABLE; None for a dense layer."""
        if not self.channels:
            return None
        per = self.status.reshape(self.channels, -1)
        return np.where((per == INACTIVE).all(axis=1), INACTIVE, np.where((per == ACTIVE).all(axis=1), ACTIVE, UNSTABLE))

    def indices(self, kind: int) -> list[int]:
        return np.flatnonzero(self.status == kind).tolist()

    def counts(self) -> dict[str, int]:
        return {name: int((self.status == kind).sum()) for kind, name in STATUS_NAMES.items()}


@dataclass
class Witnesses:
    """Inputs proving instability: per layer, the point index where each neuron was seen > 0 and < 0 (-1: none)."""

    points: np.ndarray
    positive: list[np.ndarray]
    negative: list[np.ndarray]


@dataclass
class Stability:
    """Every ReLU of a network classified on a box, with the stages that did it."""

    layers: list[LayerStability]
    stages: list[Stage]
    seconds: float
    box: Box = field(repr=False)
    time_limit: float
    witnesses: Witnesses = field(repr=False)
    notes: list[str] = field(default_factory=list)
    time_limit_reached: bool = False  # the time limit cut work short: another run may settle other neurons
    node_limit: int | None = None
    model_sha256: str = ""  # of the ONNX file classified: a classification is only read back for the same one
    proven: bool = True  # every stable status was proved in this process (read from a file: claims, see ``reprove``)
    reproof: dict[str, int] | None = None  # after ``reprove``: the file's stable claims, how many were proved again

    def counts(self) -> dict[str, int]:
        """Totals over all ReLU layers."""
        total = dict.fromkeys(STATUS_NAMES.values(), 0)
        for layer in self.layers:
            for k, v in layer.counts().items():
                total[k] += v
        return total

    @classmethod
    def from_json(cls, doc: dict[str, Any], model: Model, box: Box) -> "Stability":
        """A classification read back from ``nnxform stable --json``, refused unless it was made for this very
        ONNX file and box (its proofs hold there only); its stable statuses are claims (``proven`` False): anyone can
        edit the file, so only ``reprove`` makes them something to remove neurons or certify on."""
        try:
            if doc["model_sha256"] != model.source.get("sha256") or not doc["model_sha256"]:
                raise NnxformError("the stability file was made for another model (sha256 differs); run "
                                   "'nnxform stable' on this one")
            if doc["box_sha256"] != box_sha256(box):
                raise NnxformError("the stability file was made on another input box; run 'nnxform stable' with "
                                   "the same domain options")
            layers = []
            for entry in doc["layers"]:
                status = np.full(int(entry["neurons"]), UNDECIDED, np.int8)
                for kind, name in STATUS_NAMES.items():
                    status[np.asarray(entry[name], dtype=np.int64)] = kind
                layers.append(LayerStability(str(entry["node"]), status, int(entry.get("channels", 0))))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise NnxformError(f"the stability file is not a 'nnxform stable --json' document ({type(exc).__name__}: "
                               f"{exc})") from None
        empty = [np.zeros(0, np.int64) for _ in layers]
        return cls(layers, [], 0.0, box, float(doc.get("time_limit", 0.0)), Witnesses(np.zeros((0, box.size)), empty, empty),
                   ["classification read from a 'nnxform stable --json' file"] + list(doc.get("notes", [])),
                   bool(doc.get("time_limit_reached", False)), doc.get("node_limit"), doc["model_sha256"], proven=False)

    def layer(self, node: str) -> LayerStability:
        found = [layer for layer in self.layers if layer.node == node]
        if not found:
            raise NnxformError(f"the stability classification has no ReLU node '{node}'; was it made for this model?")
        return found[0]

    def to_json(self) -> dict[str, Any]:
        """The ``nnxform stable --json`` document."""
        return {
            "seconds": self.seconds,
            "model_sha256": self.model_sha256,
            "box_sha256": box_sha256(self.box),
            "time_limit": self.time_limit,
            "time_limit_reached": self.time_limit_reached,
            "node_limit": self.node_limit,
            "neurons": sum(layer.size for layer in self.layers),
            "totals": self.counts(),
            "layers": [{"node": layer.node, "neurons": layer.size,
                        **{name: layer.indices(kind) for kind, name in STATUS_NAMES.items()}, **_channels(layer)}
                       for layer in self.layers],
            "stages": [{"name": s.name, "seconds": s.seconds, "settled": s.settled, "note": s.note} for s in self.stages],
            "notes": self.notes,
        }

def _channels(layer: LayerStability) -> dict[str, Any]:
    """A convolutional ReLU layer's channels in ``stable --json``: how many, and which are stable at every position."""
    per = layer.channel_status()
    if per is None:
        return {}
    return {"channels": layer.channels, "inactive_channels": np.flatnonzero(per == INACTIVE).tolist(),
            "active_channels": np.flatnonzero(per == ACTIVE).tolist()}


def box_sha256(box: Box) -> str:
    """A digest of a box's bounds (float64, little-endian): which box a classification was made on."""
    return hashlib.sha256(np.concatenate([box.lower, box.upper]).astype("<f8").tobytes()).hexdigest()
