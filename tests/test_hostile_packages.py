"""Hostile model packages end in a clear ValueError, fast and in little memory (issue 20).

Every package here is built by hand (no bioimage.io extra needed) from an honest one
that loads, then broken the way a careless or hostile sender would. They are loaded by
``hostile_runner.py``: one process imports torch and napari-unet and loads the honest
package once, then forks a child per package with its address space limited to the
warm process's virtual size plus 500 MB (``RLIMIT_AS``; torch's import alone reserves
gigabytes of address space, so the limit is relative to it) and a hard 5 s timer. Each
must end in a ``ValueError`` naming the problem, within 5 s, with its peak resident
memory less than 500 MB above the warm process's.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
import yaml

from napari_unet.method.network import UNet
from napari_unet.models._bioimageio_format import ARCHITECTURE_CALLABLE, CONFIG_KEY
from napari_unet.models.checks import FORMAT_NAME

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the limits are Linux's: fork, RLIMIT_AS and /proc/self/status",
)

RUNNER = Path(__file__).with_name("hostile_runner.py")
SECONDS, MEGABYTES = 5.0, 500
KWARGS = {"in_channels": 1, "n_classes": 3, "depth": 2, "base_channels": 4, "batch_norm": True}


class Raw:
    """A zip member given as raw deflate data, with the sizes its headers declare."""

    def __init__(self, deflated: bytes, crc: int, declared_size: int):
        self.deflated, self.crc, self.declared_size = deflated, crc, declared_size

    @classmethod
    def of(cls, data: bytes) -> Raw:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        return cls(packer.compress(data) + packer.flush(), zlib.crc32(data), len(data))


def write_zip(path: Path, members: dict) -> Path:
    """Write a zip whose headers say what the members claim (sizes may lie)."""
    body, central = bytearray(), bytearray()
    for name, member in members.items():
        member = member if isinstance(member, Raw) else Raw.of(member)
        encoded, offset = name.encode(), len(body)
        sizes = (member.crc, len(member.deflated), member.declared_size, len(encoded))
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, *sizes, 0)
        body += encoded + member.deflated
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, *sizes,
                               0, 0, 0, 0, 0, offset)  # fmt: skip
        central += encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(body), 0)  # fmt: skip
    path.write_bytes(bytes(body + central + end))
    return path


def zeros_bomb(n_mib: int) -> bytes:
    """Raw deflate data that inflates to ``n_mib`` MiB of zeros (about 1 KB per MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(bytes(2**20)) + packer.flush(zlib.Z_FULL_FLUSH)  # no history
    return block * n_mib + b"\x03\x00"  # an empty final block ends the stream


def weights_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.manual_seed(0)
    torch.save(UNet(**KWARGS).state_dict(), buffer)
    return buffer.getvalue()


def description(weights: bytes, kwargs: dict | None = None) -> dict:
    """An honest description of our format (as ``export_bioimageio`` writes its entries)."""
    kwargs = KWARGS if kwargs is None else kwargs
    return {
        "type": "model",
        "format_version": "0.5.4",
        "config": {
            CONFIG_KEY: {
                "format": FORMAT_NAME,
                "architecture": copy.deepcopy(kwargs),
                "metadata": json.dumps({"normalization": {"method": "percentile"}}),
            }
        },
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt",
                "sha256": hashlib.sha256(weights).hexdigest(),
                "architecture": {
                    "callable": ARCHITECTURE_CALLABLE,
                    "kwargs": copy.deepcopy(kwargs),
                },
            }
        },
    }


def package(path: Path, rdf, weights=None) -> Path:
    """A package of ``rdf`` (a dict, or YAML text) and ``weights`` (bytes or a Raw)."""
    weights = weights_bytes() if weights is None else weights
    text = rdf if isinstance(rdf, str) else yaml.safe_dump(rdf)
    return write_zip(path, {"rdf.yaml": text.encode(), "weights.pt": weights})


LAUGHS = "".join(
    f"lol{level}: &lol{level} [{', '.join([f'*lol{level - 1}' if level else 'lol'] * 10)}]\n"
    for level in range(9)
)  # lol8 is a list 10^9 wide in 1 KB


def billion_laughs(weights: bytes, where: str) -> str:
    """The honest description with one value replaced by a 10^9-wide aliased list."""
    if where == "callable":
        text = yaml.safe_dump(description(weights)).replace(
            f"callable: {ARCHITECTURE_CALLABLE}", "callable: *lol8"
        )
    else:
        text = yaml.safe_dump(description(weights)).replace("in_channels: 1", "in_channels: *lol8")
    assert "*lol8" in text
    return LAUGHS + text


def merge_bomb(weights: bytes) -> str:
    """Merge keys (``<<``) doubling a mapping's entries at every level, not only aliases."""
    keys = ", ".join(f"k{i}: {i}" for i in range(10))
    lines = [f"m0: &m0 {{{keys}}}"]
    lines += [f"m{n}: &m{n} {{<<: [{', '.join([f'*m{n - 1}'] * 10)}]}}" for n in range(1, 9)]
    return "\n".join(lines) + "\n" + yaml.safe_dump(description(weights))


def deflated_torch_file(weights: bytes) -> bytes:
    """The weights as a torch zip whose records are compressed (torch writes them stored)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(weights)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def changed(weights: bytes, change) -> dict:
    rdf = description(weights)
    change(rdf)
    return rdf


def both_architectures(**values):
    """Declare ``values`` in both architecture entries (so they agree with each other)."""

    def change(rdf):
        rdf["config"][CONFIG_KEY]["architecture"].update(values)
        rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"].update(values)

    return change


def setter(*keys, value):
    def change(rdf):
        node = rdf
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


WEIGHTS_ENTRY = ("weights", "pytorch_state_dict")
#: case name -> (how to build it from a folder and honest weights, expected message)
CASES = {
    "billion_laughs_callable": (
        lambda d, w: package(d, billion_laughs(w, "callable"), w),
        "expands to more than",
    ),
    "billion_laughs_in_channels": (
        lambda d, w: package(d, billion_laughs(w, "in_channels"), w),
        "expands to more than",
    ),
    "merge_key_bomb": (lambda d, w: package(d, merge_bomb(w), w), "expands to more than"),
    "recursive_alias": (
        lambda d, w: package(d, "loop: &loop [*loop]\n" + yaml.safe_dump(description(w)), w),
        "not valid YAML",
    ),
    "depth_200000": (
        lambda d, w: package(d, changed(w, both_architectures(depth=200_000)), w),
        "declares depth=200000, more than the limit of 8",
    ),
    "base_channels_1e12": (
        lambda d, w: package(d, changed(w, both_architectures(base_channels=10**12)), w),
        "declares base_channels=1000000000000, more than the limit",
    ),
    "in_channels_1e9": (
        lambda d, w: package(d, changed(w, both_architectures(in_channels=10**9)), w),
        "declares in_channels=1000000000, more than the limit",
    ),
    "n_classes_1e9": (
        lambda d, w: package(d, changed(w, both_architectures(n_classes=10**9)), w),
        "declares n_classes=1000000000, more than the limit",
    ),
    "depth_as_text": (
        lambda d, w: package(d, changed(w, both_architectures(depth="5" * 10_000)), w),
        "depth must be a positive integer",
    ),
    "batch_norm_as_text": (
        lambda d, w: package(d, changed(w, both_architectures(batch_norm="yes")), w),
        "batch_norm must be True or False",
    ),
    "unknown_architecture_field": (
        lambda d, w: package(d, changed(w, both_architectures(dropout=0.5)), w),
        "unknown architecture field 'dropout'",
    ),
    "lying_zip_bomb": (  # 1 GiB of zeros declared as 7.8 MB, in a 1 MB zip
        lambda d, w: package(d, description(w), Raw(zeros_bomb(1024), 0, 7_800_000)),
        "weights.pt inflates to more than",
    ),
    "widest_level_65536": (  # every field within its limit, but 512 * 2**7 channels
        lambda d, w: package(d, changed(w, both_architectures(depth=8, base_channels=512)), w),
        "widest level has 65536 channels",
    ),
    "honest_zip_bomb_largest_network": (  # the largest network allowed: 4 GB in float64
        lambda d, w: package(
            d,
            changed(w, both_architectures(depth=8, base_channels=32, in_channels=16)),
            Raw(zeros_bomb(1024), 0, 2**30),
        ),
        "weights.pt inflates to more than",
    ),
    "honest_zip_bomb": (
        lambda d, w: package(d, description(w), Raw(zeros_bomb(1024), 0, 2**30)),
        "weights.pt inflates to more than",
    ),
    "compressed_torch_records": (
        lambda d, w: package(
            d,
            changed(
                w,
                setter(
                    *WEIGHTS_ENTRY,
                    "sha256",
                    value=hashlib.sha256(deflated_torch_file(w)).hexdigest(),
                ),
            ),
            deflated_torch_file(w),
        ),
        "not a plain torch.save file",
    ),
    "config_is_a_list": (
        lambda d, w: package(d, changed(w, setter("config", value=[1, 2])), w),
        "config must be a mapping, got list",
    ),
    "our_entry_is_text": (
        lambda d, w: package(d, changed(w, setter("config", CONFIG_KEY, value="x" * 10**5)), w),
        f"{CONFIG_KEY} must be a mapping, got str 'xxx",
    ),
    "weights_is_a_number": (
        lambda d, w: package(d, changed(w, setter("weights", value=7)), w),
        "weights must be a mapping, got int",
    ),
    "weights_entry_is_a_list": (
        lambda d, w: package(d, changed(w, setter(*WEIGHTS_ENTRY, value=[1] * 10**4)), w),
        r"weights.pytorch_state_dict must be a mapping, got list \[1, 1, 1, 1, \.\.\.\]",
    ),
    "architecture_is_text": (
        lambda d, w: package(d, changed(w, setter(*WEIGHTS_ENTRY, "architecture", value="U")), w),
        "the architecture must be a mapping, got str",
    ),
    "kwargs_is_a_list": (
        lambda d, w: package(
            d, changed(w, setter(*WEIGHTS_ENTRY, "architecture", "kwargs", value=[1, 2])), w
        ),
        "kwargs must be a mapping, got list",
    ),
    "weights_source_is_a_number": (
        lambda d, w: package(d, changed(w, setter(*WEIGHTS_ENTRY, "source", value=12)), w),
        "the weights 12 are not a file inside the package",
    ),
    "metadata_is_a_list": (
        lambda d, w: package(d, changed(w, setter("config", CONFIG_KEY, "metadata", value=[])), w),
        "metadata is not JSON text",
    ),
    "not_a_zip": (
        lambda d, w: (d.write_text("a model, promise\n" * 1000), d)[1],
        "is not a valid zip file",
    ),
    "empty_zip_file": (lambda d, w: (d.write_bytes(b""), d)[1], "is not a valid zip file"),
    "truncated_zip": (
        lambda d, w: (
            d.write_bytes(package(d, description(w), w).read_bytes()[:-40]),
            d,
        )[1],
        "is not a valid zip file",
    ),
    "garbled_member": (
        lambda d, w: write_zip(d, {"rdf.yaml": Raw(b"\xff" * 5000, 0, 4000), "weights.pt": w}),
        "is not a valid zip file",
    ),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """Every case loaded by the limited runner: {case: record}."""
    folder = tmp_path_factory.mktemp("hostile")
    weights = weights_bytes()
    honest = package(folder / "honest.zip", description(weights), weights)
    paths = [honest] + [
        build(folder / f"{name}.zip", weights) for name, (build, _) in CASES.items()
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    run = subprocess.run(
        [sys.executable, str(RUNNER), *map(str, [honest, *paths])],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in run.stdout.splitlines()]
    return {Path(r["case"]).stem: r for r in records}


def test_the_honest_package_loads_within_the_limits(outcomes):
    record = outcomes["honest"]
    assert record["outcome"] == "ok", record
    assert record["seconds"] < SECONDS and record["rss_growth_mb"] < MEGABYTES


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_package_is_a_clear_value_error_fast_and_small(outcomes, case):
    record = outcomes[case]
    assert record["outcome"] == "ValueError", record
    assert re.search(CASES[case][1], record["message"]), record
    assert record["message_length"] < 800, record  # short, truncated reprs
    assert record["seconds"] < SECONDS, record
    assert record["rss_growth_mb"] < MEGABYTES, record


def test_every_case_ran_and_the_measurements_are_shown(outcomes, capsys):
    """Every case was run; its time and memory are printed (``pytest -s``) for the docs."""
    with capsys.disabled():
        for name, record in sorted(outcomes.items()):
            seconds, growth = record["seconds"], record["rss_growth_mb"]
            measured = "-" if seconds is None else f"{seconds:.3f} s {growth:7.1f} MB"
            print(f"{name:34s} {record['outcome']:12s} {measured}")
    assert set(outcomes) == {"honest", *CASES}
