"""Checkpoint → ONNX: the EMA generator (and the discriminator, for anomaly scoring), with metadata,
checked against torch on the same inputs before the file is kept.

Generator:      z float32 (N, nz), label int64 (N,)  →  image float32 (N, C, H, W) in [-1, 1]
Discriminator:  image float32 (N, C, H, W), label int64 (N,)  →  logit (N,), features (N, F), layer_stats (N, S)
Encoder:        image float32 (N, C, H, W), label int64 (N,)  →  z (N, nz)   (built by anomaly scoring, encoder.py)
Noise is an input: a ``torch.randn`` inside ``forward`` would be traced as a constant.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import torch
from torch import nn

from .. import __version__
from ..config import ModelConfig
from ..errors import ConfigError, ModelFileError, cannot_write, writable_folder
from ..gan.models import build_discriminator, build_generator, refresh_batchnorm, without_spectral_norm
from ..store import checkpoint, outputs
from ..store.rundir import ANOMALY, MODEL_FILES, run_files
from .metadata import encode_metadata, read_metadata

PARITY_TOL = {False: 1e-4, True: 2e-2}  # fp32, fp16


def load_models(state: dict, device="cpu") -> tuple:
    """(generator for sampling, discriminator) rebuilt from a checkpoint alone."""
    cfg = ModelConfig.from_dict(state["model_config"])
    G = build_generator(cfg).to(device)
    G.load_state_dict(state["G_ema"])
    refresh_batchnorm(G, cfg)
    D = build_discriminator(cfg).to(device)
    D.load_state_dict(state["D"])
    return cfg, G.eval(), without_spectral_norm(D).eval()


class _KeepLabelInput(nn.Module):
    """Unconditional models ignore labels, and the exporter would drop an unused input. Every augmentor
    ONNX takes ``label`` all the same, so callers need not know the mode: touch it at zero cost."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, label):
        out = self.model(x, label)
        zero = label[:1].sum().to(torch.float32) * 0.0
        return tuple(o + zero for o in out) if isinstance(out, tuple) else out + zero


class _DiscriminatorOutputs(nn.Module):
    def __init__(self, D: nn.Module):
        super().__init__()
        self.D = D

    def forward(self, image, label):
        return self.D(image, label), self.D.features(image, label).flatten(1), self.D.layer_stats(image, label)


def metadata(cfg: ModelConfig, kind: str, state: dict, fp16: bool, pair: str) -> dict:
    return {
        "kind": kind,
        "mode": cfg.mode,
        "class_names": cfg.class_names,
        "size": cfg.size,
        "channels": cfg.channels,
        "nz": cfg.nz,
        "value_range": "-1,1",
        "precision": "fp16" if fp16 else "fp32",
        "augmentor_version": __version__,
        "data_fingerprint": state.get("data_fingerprint", ""),
        "step": state["step"],
        "pair": pair,
        "unlabeled_images": state.get("unlabeled_images", 0),
        "init": state.get("init", ""),
    }


def export_run(run, out: Optional[Path] = None, fp16: bool = False, force: bool = False) -> dict:
    """Export the newest good checkpoint of a run. Writes generator.onnx and discriminator.onnx in the run
    directory (replacing the run's own) or in the folder ``out``, or the file ``out`` (a name ending in .onnx) and
    its discriminator beside it; existing files outside the run only with ``force``. Returns {"generator": path, "discriminator": path, "max_abs_diff": ...}."""
    run = Path(run)
    if run.is_file():
        path, state = run, checkpoint.load(run)
        run = run.parent.parent if run.parent.name == "checkpoints" else run.parent
    else:
        found = checkpoint.latest_good(run / "checkpoints")
        if found is None:
            raise ModelFileError(f"{run}: no usable checkpoint to export (train with: augmentor fit --out {run})")
        path, state = found
    suffix = "-fp16.onnx" if fp16 else ".onnx"  # generator.onnx + discriminator.onnx, -fp16 for half precision
    if out is not None and Path(out).suffix.lower() != ".onnx" and Path(out).is_file():
        raise ConfigError(f"{out}: is a file; give --out a folder or a file name ending in .onnx")
    if out is None or Path(out).suffix.lower() != ".onnx":  # the run's file names, in the run or in the folder asked for
        g_path, d_path = (Path(out or run) / MODEL_FILES[k].replace(".onnx", suffix) for k in ("generator", "discriminator"))
    else:  # the file asked for, and its discriminator beside it
        g_path = Path(out)
        d_path = g_path.with_name(g_path.stem + "-discriminator.onnx")
    carry = _anomaly_files_to_carry(run, d_path, state["step"])
    writes = [g_path, d_path, *(d_path.parent / source.name for source in carry)]
    if g_path.parent.resolve() == run.resolve():  # the run's own files are replaced, never a file of the user's
        in_the_way = outputs.in_the_way(run, [p.name for p in writes], ours=run_files(run)["."])
        if in_the_way:
            raise ConfigError(f"{in_the_way[0]}: a file augmentor did not write, where export writes; move it away or give --out")
        outputs.claim(*writes)  # the run's own from now on: a later fit --force removes them
    else:  # files the user named, or in a folder of theirs: replaced only with force
        for path in writes:
            if path.exists() and not force:
                raise ConfigError(f"{path}: exists; choose another --out (or --force to replace it)")
            if path.is_dir():
                raise ConfigError(f"{path}: is a folder; choose another --out")
    writable_folder(g_path.parent)
    # each file names the other in its metadata ("pair"), so either finds its partner
    cfg, G, D = load_models(state)
    n = 4
    z = torch.randn(n, cfg.nz, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n) % cfg.num_classes
    if cfg.mode == "unconditional":
        G, D = _KeepLabelInput(G), _KeepLabelInput(_DiscriminatorOutputs(D))
    else:
        D = _DiscriminatorOutputs(D)
    G, D = G.eval(), D.eval()  # a new wrapper starts in training mode, and export restores that mode on all children
    _export(G, (z, labels), g_path, ["z", "label"], ["image"], metadata(cfg, "generator", state, fp16, d_path.name), fp16)
    images = G(z, labels).detach()
    _export(
        D,
        (images, labels),
        d_path,
        ["image", "label"],
        ["logit", "features", "layer_stats"],
        metadata(cfg, "discriminator", state, fp16, g_path.name),
        fp16,
    )
    diff = max(parity(G, g_path, (z, labels)), parity(D, d_path, (images, labels)))
    if diff > PARITY_TOL[fp16]:
        raise ModelFileError(f"{g_path}: ONNX output differs from torch by {diff:.2e} (> {PARITY_TOL[fp16]}); please report this")
    for source in carry:
        outputs.write(d_path.parent / source.name, lambda f, source=source: f.write(source.read_bytes()))
    carried = [d_path.parent / source.name for source in carry]
    return {"generator": g_path, "discriminator": d_path, "max_abs_diff": diff, "checkpoint": path, "anomaly": carried}


def _anomaly_files_to_carry(run: Path, d_path: Path, step: int) -> list:
    """What `augmentor score` kept in the run (anomaly.npz, encoder.onnx), to copy beside an exported
    discriminator elsewhere when it was computed for the exported checkpoint: the exported folder then scores
    without training images. (Only beside discriminator.onnx: the encoder's metadata names that file as its pair.)"""
    references = run / ANOMALY
    if d_path.name != MODEL_FILES["discriminator"] or d_path.parent.resolve() == run.resolve() or not references.is_file():
        return []
    with np.load(references) as saved:
        if int(saved["step"]) != step:
            return []  # computed for an older checkpoint: `score` on the exported folder says what to do
    sources = [references]
    encoder = run / MODEL_FILES["encoder"]
    if encoder.is_file() and read_metadata(encoder)["step"] == step:  # an older checkpoint's encoder stays behind
        sources.append(encoder)
    return sources


def _export(model, args, path: Path, input_names, output_names, meta: dict, fp16: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # a new name: clobbers nothing
    os.close(fd)
    tmp = Path(tmp)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; it runs on torch 2.4+
            torch.onnx.export(
                model,
                args,
                str(tmp),
                input_names=input_names,
                output_names=output_names,
                opset_version=17,
                dynamic_axes={name: {0: "batch"} for name in input_names + output_names},
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        if fp16:
            proto = to_fp16(proto)
        for k, v in encode_metadata(meta).items():
            proto.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(proto)
        outputs.write(path, lambda f: f.write(proto.SerializeToString()))
    except OSError as e:
        raise cannot_write(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Half-precision weights and arithmetic, float32 at the inputs and outputs (casts at the edges)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:  # constants folded into nodes, and casts the exporter wrote to float32
        for attr in node.attribute:
            if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    casts_in, casts_out = [], []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = inp.name + "_fp16"
            for node in graph.node:
                node.input[:] = [half if i == inp.name else i for i in node.input]
            casts_in.append(helper.make_node("Cast", [inp.name], [half], to=TensorProto.FLOAT16))
    for out in graph.output:
        half = out.name + "_fp16"
        for node in graph.node:
            node.output[:] = [half if o == out.name else o for o in node.output]
        casts_out.append(helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return proto


def parity(model: nn.Module, path: Path, args) -> float:
    """Max abs difference between torch and onnxruntime (CPU EP) on the same inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    with torch.no_grad():
        ref = model(*args)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = sess.run(None, feeds)
    return max(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got))


def export_encoder(E: nn.Module, path: Path, cfg: ModelConfig, state: dict) -> float:
    """The anomaly encoder → ONNX with the metadata of the checkpoint it was trained against (its pair: the
    run's discriminator.onnx), parity-checked. Returns the max abs difference to torch."""
    x = torch.rand(4, cfg.channels, cfg.size, cfg.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.zeros(4, dtype=torch.long)
    E = _KeepLabelInput(E).eval()
    _export(
        E,
        (x, labels),
        path,
        ["image", "label"],
        ["z"],
        metadata(cfg, "encoder", state, False, MODEL_FILES["discriminator"]),
        False,
    )
    diff = parity(E, path, (x, labels))
    if diff > PARITY_TOL[False]:
        path.unlink()
        raise ModelFileError(f"{path}: ONNX output differs from torch by {diff:.2e} (> {PARITY_TOL[False]}); please report this")
    return diff
