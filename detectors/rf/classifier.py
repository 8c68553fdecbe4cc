"""The ONNX emitter classifier: channelised 2xN snippets in, class probabilities out.

Class names, snippet length and oversampling come from the model's own metadata (written by
models/rf/train.py), so a model trained with other settings is used as it was trained or refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from detectors.rf.channel import OVERSAMPLE, SNIPPET_LEN, to_model_input

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "rf" / "zastava-rf.onnx"


class RFClassifier:
    def __init__(self, path: str | Path = DEFAULT_MODEL, threads: int = 1):
        self.path = Path(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ValueError(f"cannot load RF classifier {self.path}: {e}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.classes: list[str] = json.loads(meta["classes"])
        except (KeyError, ValueError):
            raise ValueError(f"{self.path}: no 'classes' in the model metadata (not a Zastava RF model?)") from None
        self.snippet_len = int(meta.get("snippet_len", SNIPPET_LEN))
        self.oversample = float(meta.get("oversample", OVERSAMPLE))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        if inp.shape[1:] != [2, self.snippet_len]:
            raise ValueError(f"{self.path}: input shape {inp.shape}, expected [batch, 2, {self.snippet_len}]")

    def probabilities(self, snippets: np.ndarray) -> np.ndarray:
        """(B, N) complex snippets -> (B, classes) softmax probabilities."""
        x = to_model_input(snippets)
        logits = self.session.run(None, {self.input_name: x})[0].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def classify(self, snippets: np.ndarray) -> list[tuple[str, float]]:
        p = self.probabilities(snippets)
        return [(self.classes[i], float(p[k, i])) for k, i in enumerate(p.argmax(axis=1))]
