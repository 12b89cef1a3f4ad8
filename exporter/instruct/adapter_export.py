"""`tuneship export CHECKPOINT --adapter-of chat --name support`: a LoRA instruct checkpoint published as an
adapter of an already published generator instead of a merged copy. The generator loads it without a restart
(it watches `<model>/adapters/`), and requests choose it by name.

1. The checkpoint must have been tuned from exactly the weights the generator serves (their fingerprint is
   recorded at export, `tuneship_source.json`); anything else is refused, naming both.
2. The adapter becomes the bank's matrices for the published graph (adapters.py).
3. Gate: the held-out prompts answered through the served batcher with the adapter, against the merged
   checkpoint's PyTorch answers (exact match where answers are a closed set, else agreement); more than
   --accuracy-threshold points lost is not published unless --force.
4. Published atomically (a temporary folder renamed into place), replacing an adapter of the same name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneship.exporter.errors import ExportError
from tuneship.exporter.instruct.adapters import (
    base_model_dir,
    convert,
    read_instruct_checkpoint,
    weights_fingerprint,
)
from tuneship.exporter.instruct.measure import batched_greedy, torch_greedy
from tuneship.exporter.instruct.options import InstructExportOptions
from tuneship.exporter.run import ExportRunReport, TaskExport
from tuneship.exporter.timing import MEASURED, Timing
from tuneship.progress import step
from tuneship.repository import ADAPTERS_DIR, REPORT_FILE, SOURCE_FILE, existing_versions, latest_version, read_config
from tuneship.serving import INFO_FILE, WEIGHTS_FILE, LoraWeights, check_name
from tuneship.tasks import TEXT_GENERATION

GATE_TOKENS = 8
GATE_PROMPTS_MAX = 200


@dataclass
class AdapterVariant:
    name: str
    path: Path
    width: int


@dataclass
class AdapterReport:
    name: str
    exact_match: float | None = None
    merged_exact_match: float | None = None
    agreement: float = 0.0
    drop_points: float = 0.0
    passed: bool = False
    note: str = ""


@dataclass
class AdapterExportReport(ExportRunReport):
    adapter: str
    base_version: int
    exported_at: str
    task: str = "instruct-adapter"

    def describe(self) -> str:
        return (f"published adapter {self.adapter} of {self.name} (serving v{self.base_version}) in "
                f"{self.repository}\nwhy: {self.reason}")


def read_source(version_dir: Path) -> dict[str, Any]:
    path = version_dir / SOURCE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data


class AdapterExport(TaskExport[InstructExportOptions, AdapterVariant, AdapterReport]):
    options_class = InstructExportOptions

    def __init__(self, options: InstructExportOptions, timing: Timing = MEASURED) -> None:
        super().__init__(options, timing)
        try:
            self.adapter = check_name(options.name)
        except ValueError as error:
            raise ExportError(f"--name: {error}") from None
        self.name = str(options.adapter_of)

    def check_options(self) -> None:
        if self.options.base_model:
            raise ExportError("--base-model and --adapter-of exclude each other: publish the base first "
                              "(--base-model --name BASE), then the adapter (--adapter-of BASE --name ADAPTER)")

    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tuneship.trainer import read_conversations

        options = self.options
        self.checkpoint = checkpoint = read_instruct_checkpoint(Path(options.checkpoint))
        manifest = checkpoint.manifest
        adapter_dir = checkpoint.path / str(manifest.get("adapter") or "adapter")
        if checkpoint.method != "lora" or not (adapter_dir / "adapter_config.json").is_file():
            raise ExportError(f"{checkpoint.path}: a {checkpoint.method} checkpoint has no LoRA adapter to publish; "
                              "--adapter-of takes a checkpoint trained with --method lora")
        self.adapter_dir = adapter_dir
        self.base_path = base_model_dir(checkpoint, "and the adapter is checked against the weights it was tuned "
                                                    "from")
        self.base_fingerprint = weights_fingerprint(self.base_path)
        held_out = read_conversations(checkpoint.eval_data) if checkpoint.eval_data else []
        if not held_out:
            raise ExportError(f"{checkpoint.path}: no held-out conversations (eval.jsonl) to gate the adapter with")
        self.gate = held_out[:min(options.gate_samples, GATE_PROMPTS_MAX)]
        self.answers = {a.lower() for a in checkpoint.labels}
        with step(f"loading checkpoint {checkpoint.path} (merged, the adapter's reference)"):
            self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint.path))
            model: Any = AutoModelForCausalLM.from_pretrained(str(checkpoint.path))
            self.model = model.eval()
        eos = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        self.eos = {int(t) for t in eos if t is not None}

    def check_repository(self) -> None:
        repository = Path(self.options.repository)
        config = read_config(repository, self.name)
        task = config.parameters["task"].string_value if "task" in config.parameters else ""
        if task != TEXT_GENERATION.name:
            raise ExportError(f"{repository / self.name}: not a generator (task {task or 'unknown'}); --adapter-of "
                              "names a model published from an instruct checkpoint")
        self.version_dir = latest_version(repository, self.name)
        served = read_source(self.version_dir).get("weights")
        if served != self.base_fingerprint:
            raise ExportError(
                f"{self.checkpoint.path} was tuned from {self.base_path} (weights {self.base_fingerprint}), but "
                f"{self.name} v{self.version_dir.name} serves "
                f"{read_source(self.version_dir).get('model', 'other weights')} (weights {served or 'unrecorded'}): "
                f"an adapter only fits the weights it was tuned on. Publish that base first: tuneship export "
                f"{self.checkpoint.path} --base-model --name {self.name}")

    @property
    def source(self) -> Path:
        return Path(self.checkpoint.path)

    def publishes(self) -> str:
        return f"adapter {self.adapter} of {self.name}"

    def report_path(self) -> Path:
        return Path(self.options.repository) / self.name / ADAPTERS_DIR / self.adapter / REPORT_FILE

    def build(self, workdir: Path) -> list[AdapterVariant]:
        with open(self.version_dir / "genai_config.json", encoding="utf-8") as handle:
            genai = json.load(handle)["model"]
        with step(f"converting {self.adapter_dir} for {self.name} v{self.version_dir.name}'s graph"):
            arrays, width = convert(self.adapter_dir, self.version_dir / genai["decoder"]["filename"], genai)
        from safetensors.numpy import save_file

        folder = workdir / self.adapter
        folder.mkdir()
        save_file(arrays, str(folder / WEIGHTS_FILE))
        info = {"width": width, "base_weights": self.base_fingerprint, "checkpoint": str(self.checkpoint.path),
                "digest": f"{self.adapter}-{time.time_ns()}", "labels": sorted(self.answers),
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return [AdapterVariant(name=self.adapter, path=folder, width=width)]

    def measure(self, variants: list[AdapterVariant]) -> list[AdapterReport]:
        from tuneship.trainer import normalise, prompt_ids

        variant = variants[0]
        report = AdapterReport(name=variant.name)
        prompts = [prompt_ids(self.tokenizer, c) for c in self.gate]
        slots = self.options.generation.max_concurrency
        with step(f"measuring adapter {variant.name}: greedy answers to {len(prompts)} held-out prompts as served "
                  f"(batched {slots} at a time) and merged in PyTorch"):
            served = batched_greedy(self.version_dir, prompts, GATE_TOKENS, slots, LoraWeights.load(str(variant.path)))
            merged = [torch_greedy(self.model, p, GATE_TOKENS, self.eos) for p in prompts]
        def decode(tokens: list[int]) -> str:
            return str(self.tokenizer.decode(tokens, skip_special_tokens=True)).strip()

        served_text, merged_text = [decode(t) for t in served], [decode(t) for t in merged]
        report.agreement = round(sum(a == b for a, b in zip(served_text, merged_text, strict=True)) / len(prompts), 4)
        if self.answers:
            def score(answers: list[str]) -> float:
                return round(sum(normalise(a) == normalise(c.answer) for a, c in zip(answers, self.gate, strict=True))
                             / len(self.gate), 4)

            report.exact_match, report.merged_exact_match = score(served_text), score(merged_text)
        return [report]

    def choose(self, reports: list[AdapterReport]) -> tuple[AdapterReport, str]:
        report, threshold = reports[0], self.options.accuracy_threshold
        if report.exact_match is not None and report.merged_exact_match is not None:
            report.drop_points = round(100 * (report.merged_exact_match - report.exact_match), 2)
            what = (f"exact match {report.exact_match:.3f} as served, {report.merged_exact_match:.3f} merged "
                    f"(answers {100 * report.agreement:.1f}% identical)")
        else:
            report.drop_points = round(100 * (1 - report.agreement), 2)
            what = f"{100 * report.agreement:.1f}% of answers identical to the merged checkpoint's"
        report.passed = report.drop_points <= threshold
        report.note = f"{what}; {'within' if report.passed else 'over'} the {threshold:g}-point gate"
        print(f"adapter {report.name}: {report.note}")
        if report.passed:
            return report, f"answers as the merged checkpoint does: {what}"
        if self.options.force:
            return report, f"published with --force despite the gate: {what}"
        raise ExportError(f"not published: adapter {report.name} {report.note}; pass --force to publish it anyway")

    def publish(self, variant: AdapterVariant, chosen: AdapterReport) -> dict[str, int]:
        return publish_adapter(variant.path, Path(self.options.repository), self.name, self.adapter)

    def report(self, versions: dict[str, int], chosen: AdapterReport, reason: str,
               reports: list[AdapterReport]) -> AdapterExportReport:
        return AdapterExportReport(
            name=self.name, repository=str(self.options.repository), versions=versions, target="cpu",
            chosen=chosen.name, reason=reason, variants=[asdict(r) for r in reports], adapter=self.adapter,
            base_version=versions[self.name], exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def publish_adapter(source: Path, repository: Path, model: str, adapter: str) -> dict[str, int]:
    """The adapter files in `source` as `model`'s adapter `adapter`, replacing one of that name in one rename (the
    generator watching the folder never sees half an adapter); the base version it is served on."""
    root = repository / model / ADAPTERS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / check_name(adapter)
    # A dot name: the generator skips it until the rename puts the whole adapter in place.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    os.chmod(staging, 0o755)
    try:
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        old = None
        if final.exists():
            old = root / f".old-{adapter}-{time.time_ns()}"
            os.rename(final, old)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return {model: existing_versions(root.parent)[-1]}


def remove_adapter(repository: Path, model: str, adapter: str) -> None:
    """Unpublish an adapter: requests naming it are refused from the generator's next look (running ones end)."""
    folder = repository / model / ADAPTERS_DIR / check_name(adapter)
    if not folder.is_dir():
        raise ExportError(f"{folder}: no adapter {adapter!r} is published for {model}")
    trash = folder.parent / f".old-{adapter}-{time.time_ns()}"
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
