"""Assemble the largest English corpus this machine holds offline, as token ids for SAE training.

No network: the text is what Debian and PyPI packages install, read in this order, each document
kept once (licences repeat across hundreds of packages):

1. ``docstrings``: module, class and function docstrings of every Python file of the standard
   library and of the installed packages (``ast``, nothing imported), the longest English prose on
   the machine;
2. ``package docs``: ``*.md``, ``*.rst`` and ``*.txt`` files in the installed packages (READMEs,
   licences, metadata descriptions);
3. ``debian docs``: ``/usr/share/doc`` (copyright files, changelogs, gzip-compressed ones included);
4. the shipped demo corpus (``interp/sae/corpus``).

Documents are tokenised with the default model's tokenizer, each followed by EOS, and written as a
1-D ``uint16`` ``.npy`` file (the vocabulary has 49,152 ids; 2 bytes a token, so 20M tokens are 40 MB:
carried next to the working tree, never committed). A JSON file beside it records the tokens each
source gave. ``--survey`` counts characters per source and estimates tokens from a sample, without
writing ids.

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/build_corpus.py --out data/corpus/tokens.npy [--max-tokens 20000000]
    HF_HUB_OFFLINE=1 python benchmarks/build_corpus.py --survey
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIN_CHARS = 200  # shorter docstrings are mostly one-line summaries and parameter lists


def python_files() -> Iterator[Path]:
    """The standard library's Python files (without its site-packages), then the installed packages'."""
    yield from sorted(p for p in Path(sysconfig.get_paths()["stdlib"]).rglob("*.py") if "site-packages" not in p.parts)
    yield from sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py"))


def docstrings() -> Iterator[str]:
    for path in python_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.get_docstring(node)
                if text and len(text) >= MIN_CHARS:
                    yield text


def package_docs() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["purelib"])
    for pattern in ("*.md", "*.rst", "*.txt"):
        for path in sorted(root.rglob(pattern)):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if len(text) >= MIN_CHARS and sum(c.isalpha() or c.isspace() for c in text[:2000]) > 0.8 * min(len(text), 2000):
                yield text


def debian_docs() -> Iterator[str]:
    root = Path("/usr/share/doc")
    if not root.is_dir():
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
            continue
        if len(text) >= MIN_CHARS:
            yield text


def demo() -> Iterator[str]:
    from interp.sae.tokens import DemoSource, _documents

    yield from _documents(DemoSource())


SOURCES = {"docstrings": docstrings, "package docs": package_docs, "debian docs": debian_docs, "demo corpus": demo}


def unique(documents: Iterator[str], seen: set[bytes]) -> Iterator[str]:
    for text in documents:
        key = hashlib.blake2b(text.strip().encode(), digest_size=16).digest()
        if key not in seen:
            seen.add(key)
            yield text.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/corpus/tokens.npy")
    parser.add_argument("--max-tokens", type=int, default=20_000_000)
    parser.add_argument("--survey", action="store_true", help="count characters per source; estimate tokens")
    args = parser.parse_args()
    from interp.models import load_model

    tokenizer = load_model("smollm2-135m").tokenizer
    eos = int(tokenizer.eos_token_id)
    seen: set[bytes] = set()
    report: dict[str, dict[str, int]] = {}
    parts: list[np.ndarray] = []
    total = 0
    for name, source in SOURCES.items():
        documents = chars = tokens = 0
        batch: list[str] = []

        def flush(batch: list[str]) -> int:
            count = 0
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                parts.append(np.asarray([*ids, eos], dtype=np.uint16))
                count += len(ids) + 1
            return count

        sample_chars = sample_tokens = 0
        for text in unique(source(), seen):
            documents += 1
            chars += len(text)
            if args.survey:
                if sample_chars < 2_000_000:
                    sample_chars += len(text)
                    sample_tokens += len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
                continue
            if total + tokens >= args.max_tokens:
                break
            batch.append(text)
            if len(batch) == 256:
                tokens += flush(batch)
                batch = []
        if batch and not args.survey:
            tokens += flush(batch)
        if args.survey:
            tokens = int(chars * sample_tokens / max(sample_chars, 1))
        total += tokens
        report[name] = {"documents": documents, "characters": chars, "tokens": tokens}
        print(name, report[name], flush=True)
    print(json.dumps({"total_tokens": total, "sources": report}, indent=2))
    if args.survey:
        return
    stream = np.concatenate(parts)[: args.max_tokens]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, stream)
    out.with_suffix(".json").write_text(json.dumps({"tokens": len(stream), "tokenizer": "smollm2-135m",
                                                    "sources": report}, indent=2))
    print(f"wrote {len(stream):,} tokens to {out} ({out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
