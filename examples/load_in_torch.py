#!/usr/bin/env python3
"""Open a backprop model file in PyTorch and run it.

    python3 examples/load_in_torch.py MODEL.safetensors --images t10k-images-idx3-ubyte.gz \
        [--first 0] [--count 1000] [--out outputs.csv]

A model file (docs/FORMAT.md, "Models") is a safetensors file whose tensors are the
state_dict of BackpropNet below: the layers in an nn.ModuleList named `layers`, in stack order,
as the file's `architecture` metadata lists them. This script builds that module from the
metadata, loads the tensors with load_state_dict(strict=True), so a tensor too many, too few or
of the wrong shape is an error, and writes one CSV line per image:

    index,predicted,output_0,output_1,...

with the outputs printed to 9 significant digits (enough to give back the same float32).

The layers are PyTorch's own modules: nn.Linear, nn.Conv2d, nn.BatchNorm1d/2d, nn.MaxPool2d,
nn.AvgPool2d, nn.Dropout, and nn.LSTM and nn.GRU (one layer, batch_first) for lstm and gru,
which read the image as a sequence and hand on the last step's hidden state. The recurrent two
are subclasses only to take the file's tensor names, which are not the `_l0` ones nn.LSTM gives
its tensors (see FileNames).

The tensors are read with safetensors.torch.load_file when the safetensors package is there;
Debian 12 does not package it, so otherwise the file is read here with json and struct, which
the format is simple enough for.
"""
import argparse
import collections
import gzip
import json
import struct
import sys

import torch
from torch import nn

FORMAT_NAME = "backprop.model"
FORMAT_MAJOR = 1

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "linear": lambda z: z,
    # Over each sample's outputs: the library's softmax is over a column, one sample.
    "softmax": lambda z: torch.softmax(z, dim=1),
}


def conv_options(entry, args):
    """(activation, stride, padding) of a conv entry's options after KxHxW: ACT, sS, pP in any
    order (relu, 1, 0 when absent)."""
    act, stride, pad = "relu", 1, 0
    for a in args:
        if a[:1] == "s" and a[1:].isdigit():
            stride = int(a[1:])
        elif a[:1] == "p" and a[1:].isdigit():
            pad = int(a[1:])
        elif a in ACTIVATIONS:
            act = a
        else:
            raise ValueError(f"architecture: cannot map option '{a}' of '{entry}'")
    return act, stride, pad


class FileNames:
    """Makes an nn.LSTM or nn.GRU of one layer keep its tensors under the file's names
    (FILE_NAMES, the file's name -> PyTorch's) both ways: load_state_dict takes them, state_dict
    gives them, and strict loading still refuses a tensor too many, too few or misshapen, naming
    it as the file does. The file's names (the library's tensor table's) have no layer index:
    one position of the stack is one layer, and a stack of two LSTMs is two positions.

    The hooks are _load_from_state_dict and _save_to_state_dict, which nn.Module calls per module
    with its prefix ("layers.0."): private, but the same from torch 1.x to 2.x, where the public
    hooks of torch 1.13 (Debian 12's) see no prefix and could not name a missing tensor.
    """

    FILE_NAMES = {}

    def fill(self, ours, prefix):
        """Adds the tensors of PyTorch's that the file does not hold, when it holds the rest."""

    def fold(self, destination, prefix, own):
        """Puts PyTorch's tensors that the file does not hold into those it does."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        ours = {}
        for key, value in state_dict.items():
            name = key[len(prefix):] if key.startswith(prefix) else None
            if name in self.FILE_NAMES:
                ours[prefix + self.FILE_NAMES[name]] = value
            elif name is not None and strict:  # PyTorch's own names included: not the file's
                unexpected_keys.append(key)
        self.fill(ours, prefix)
        first_missing, first_error = len(missing_keys), len(error_msgs)
        super()._load_from_state_dict(ours, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        for file_name, torch_name in self.FILE_NAMES.items():
            theirs, mine = prefix + torch_name, prefix + file_name
            missing_keys[first_missing:] = [mine if k == theirs else k
                                            for k in missing_keys[first_missing:]]
            error_msgs[first_error:] = [m.replace(f" {theirs}:", f" {mine}:")
                                        for m in error_msgs[first_error:]]

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        own = collections.OrderedDict()
        super()._save_to_state_dict(own, prefix, keep_vars)
        for file_name, torch_name in self.FILE_NAMES.items():
            destination[prefix + file_name] = own.pop(prefix + torch_name)
        self.fold(destination, prefix, own)


class LSTM(FileNames, nn.LSTM):
    """nn.LSTM, gates in its order (i, f, g, o), with the library's one bias: the two biases of
    nn.LSTM are only ever added, so the file keeps their sum, and loads as bias_ih_l0 with a zero
    bias_hh_l0; a module trained in PyTorch gives their sum back."""

    FILE_NAMES = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0", "bias": "bias_ih_l0"}

    def fill(self, ours, prefix):
        if prefix + "bias_ih_l0" in ours:  # else it is missing, and reported as "bias"
            ours[prefix + "bias_hh_l0"] = torch.zeros_like(self.bias_hh_l0)

    def fold(self, destination, prefix, own):
        bias = prefix + "bias"
        destination[bias] = destination[bias] + own.pop(prefix + "bias_hh_l0")


class GRU(FileNames, nn.GRU):
    """nn.GRU, gates in its order (r, z, n), with both its biases: b_hn is inside the reset
    gate's product, so it cannot be added into b_in, and the file keeps all of nn.GRU's."""

    FILE_NAMES = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0",
                  "bias_ih": "bias_ih_l0", "bias_hh": "bias_hh_l0"}


class BackpropNet(nn.Module):
    """The PyTorch module equivalent to a backprop layer stack.

    spec is the `architecture` string ("dense:100:linear,batchnorm:relu,dropout:0.2,
    dense:10:softmax"), width the input width and shape the input's (C, H, W) from the file's
    input_shape, or None for a flat input. Position p of the stack is self.layers[p], so its
    tensors are "layers.<p>.weight" and so on, the names the file uses:
      dense:N[:ACT]          nn.Linear(width, N)         then ACT (default sigmoid)
      conv:KxHxW[:ACT][:sS][:pP]
                             nn.Conv2d(C, K, (H, W), S, P) then ACT (default relu)
      maxpool:N[:sS]         nn.MaxPool2d(N, S)          S defaults to N; no padding, floor
      avgpool:N[:sS]         nn.AvgPool2d(N, S)          the same; every window inside the
                                                         plane, so a mean of N x N inputs
      dropout:P              nn.Dropout(P)               no tensors; the identity in eval()
      batchnorm[:ACT]        nn.BatchNorm2d(C) on planes of more than one position (after a
                             conv, or on an image input), else nn.BatchNorm1d(width); then
                             ACT (default linear); eps 1e-5, momentum 0.1 as the library's
      lstm:N[:rows|:cols]    LSTM(W, N) by rows (the default), LSTM(H, N) by cols, on an
      gru:N[:rows|:cols]     input of one plane (C = 1); GRU likewise; one layer,
                             batch_first; the last step's hidden state h_T (N values a
                             sample) goes on, with no activation
    The activations are functions of forward, not modules, so they take no position: the
    library counts them as part of their layer. So do the reshapes: the net's input and a
    dense layer's are [N, features], an image layer's [N, C, H, W]; a sample's features are its
    C planes of H x W, each row by row, which is what flattening NCHW gives, so forward only
    views x in the form each layer takes. A recurrent layer's input is one plane, and its
    sequence [N, T, F] is that plane's rows (T = H steps of F = W pixels, a view) or its
    columns (the view transposed, T = W steps of H), as the library reads it (src/layers/
    sequence.c). Of what nn.LSTM and nn.GRU return, output[:, -1] is h_T of the one layer.
    """

    def __init__(self, spec, width, shape=None):
        super().__init__()
        c, h, w = shape if shape else (width, 1, 1)
        if c * h * w != width:
            raise ValueError(f"input shape {c}x{h}x{w} is not {width} inputs")
        layers, self.activations, self.forms = [], [], []
        for entry in spec.split(","):
            kind, *args = entry.split(":")
            form = None  # the layer takes either form
            if kind == "dense" and len(args) in (1, 2):
                units = int(args[0])
                layers.append(nn.Linear(c * h * w, units))
                c, h, w, form = units, 1, 1, "flat"
                act = args[1] if len(args) == 2 else "sigmoid"
            elif kind == "conv" and args:
                k, kh, kw = (int(v) for v in args[0].split("x"))
                act, stride, pad = conv_options(entry, args[1:])
                layers.append(nn.Conv2d(c, k, (kh, kw), stride=stride, padding=pad))
                form = ("image", c, h, w)
                c, h, w = k, (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
            elif kind in ("maxpool", "avgpool") and len(args) in (1, 2):
                n = int(args[0])
                stride = int(args[1][1:]) if len(args) == 2 and args[1][:1] == "s" else n
                if len(args) == 2 and args[1] != f"s{stride}":
                    raise ValueError(f"architecture: cannot map option '{args[1]}' of '{entry}'")
                pool = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
                layers.append(pool(n, stride=stride))
                form = ("image", c, h, w)
                h, w, act = (h - n) // stride + 1, (w - n) // stride + 1, "linear"
            elif kind == "dropout" and len(args) == 1:
                layers.append(nn.Dropout(float(args[0])))
                act = "linear"
            elif kind in ("lstm", "gru") and args and args[1:] in ([], ["rows"], ["cols"]):
                if c != 1:  # the library refuses it too: a sequence is one plane
                    raise ValueError(f"architecture: '{entry}' takes an input of 1 x steps x "
                                     f"features, not {c}x{h}x{w}")
                units, by_cols = int(args[0]), args[1:] == ["cols"]
                module = LSTM if kind == "lstm" else GRU
                layers.append(module(h if by_cols else w, units, num_layers=1, batch_first=True))
                form = ("cols" if by_cols else "rows", h, w)
                c, h, w, act = units, 1, 1, "linear"
            elif kind == "batchnorm" and len(args) <= 1:
                if h * w > 1:
                    layers.append(nn.BatchNorm2d(c, eps=1e-5, momentum=0.1))
                    form = ("image", c, h, w)
                else:
                    layers.append(nn.BatchNorm1d(c, eps=1e-5, momentum=0.1))
                    form = "flat"
                act = args[0] if args else "linear"
            else:
                raise ValueError(f"architecture: cannot map layer '{entry}'")
            if act not in ACTIVATIONS:
                raise ValueError(f"architecture: unknown activation in '{entry}'")
            self.activations.append(act)
            self.forms.append(form)
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer, act, form in zip(self.layers, self.activations, self.forms):
            if form == "flat":
                x = x.reshape(x.shape[0], -1)
            elif form is not None:
                x = x.reshape(x.shape[0], *form[1:])
                if form[0] == "cols":
                    x = x.transpose(1, 2)
            y = layer(x)
            if isinstance(layer, nn.RNNBase):
                y = y[0][:, -1]
            x = ACTIVATIONS[act](y)
        return x.reshape(x.shape[0], -1)


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, with the standard library and torch only.

    Enough checking that a broken file fails here rather than loading wrong numbers: the
    header is JSON, every range lies inside the data and has its shape's size. (The library's
    own reader checks much more, CRCs included.)
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than a safetensors header")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, not F32")
        begin, end = info["data_offsets"]
        count = 1
        for dim in info["shape"]:
            count *= dim
        if not 0 <= begin <= end <= len(data) or end - begin != 4 * count:
            raise ValueError(f"{path}: tensor {name} has a bad byte range")
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32)
        tensors[name] = flat.reshape(info["shape"])
    return tensors, metadata


def read_metadata(path):
    """The __metadata__ of a safetensors file: the header alone is read."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n).decode("utf-8")).get("__metadata__", {})


def load_tensors(path):
    try:
        from safetensors.torch import load_file
    except ImportError:
        return read_safetensors(path)[0]
    return load_file(path)


def load_model(path):
    """(module in eval mode, metadata) for a backprop model file."""
    meta = read_metadata(path)
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a backprop model (format {meta.get('format')!r})")
    major = int(meta.get("format_version", "").split(".")[0])
    if major != FORMAT_MAJOR:
        raise ValueError(f"{path}: format version {meta['format_version']} is not {FORMAT_MAJOR}.x")
    shape = None
    if "input_shape" in meta:  # "CxHxW", the column's shape the image layers were planned for
        shape = tuple(int(v) for v in meta["input_shape"].split("x"))
    model = BackpropNet(meta["architecture"], int(meta["input_width"]), shape)
    model.load_state_dict(load_tensors(path), strict=True)
    model.eval()  # dropout off, batch norm on its running statistics: the library's inference
    return model, meta


def read_idx_images(path):
    """(count, rows, cols, bytes) of an IDX image file, raw or gzip."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        blob = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", blob[:16])
    if magic != 0x00000803 or len(blob) != 16 + count * rows * cols:
        raise ValueError(f"{path}: not an IDX image file")
    return count, rows, cols, blob[16:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--images", required=True, help="IDX image file (raw or .gz)")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--out", help="CSV file (default: standard output)")
    args = ap.parse_args()

    model, meta = load_model(args.model)
    count, rows, cols, pixels = read_idx_images(args.images)
    width = int(meta["input_width"])
    if rows * cols != width:
        sys.exit(f"{args.images}: images of {rows} x {cols}, the model takes {width} inputs")
    first, n = args.first, min(args.count, count - args.first)
    if first < 0 or n < 1:
        sys.exit(f"{args.images}: no images from {first} (it has {count})")
    # The library scales bytes by the model's input_scale (1/255 for IDX images) in float32.
    scale = torch.tensor(float(meta.get("input_scale", 1.0 / 255.0)), dtype=torch.float32)
    raw = torch.frombuffer(bytearray(pixels[first * width:(first + n) * width]), dtype=torch.uint8)
    x = raw.reshape(n, width).to(torch.float32) * scale
    with torch.no_grad():
        y = model(x)

    out = open(args.out, "w") if args.out else sys.stdout
    for i in range(n):
        row = y[i].tolist()
        best = int(torch.argmax(y[i]))
        out.write(",".join([str(first + i), str(best)] + [f"{v:.9g}" for v in row]) + "\n")
    if args.out:
        out.close()


if __name__ == "__main__":
    main()
