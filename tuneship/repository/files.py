"""The model repository's own vocabulary, spelled once: the files and folders tuneship keeps beside Triton's
(`config.pbtxt` and version folders are Triton's), and how long a writer waits for the repository's lock.

Every stage that reads or writes a repository (the exporter, deploy, monitor, tuning, search, the API) takes the
names from here. The adapters' folder and info file are the serving engine's (it runs where tuneship is not
installed, so it keeps its own spelling of them; a test holds the two equal)."""

from __future__ import annotations

ADAPTERS_DIR = "adapters"
"""A generator's LoRA adapters, one folder each beside its versions."""
ADAPTER_INFO, ADAPTER_WEIGHTS = "adapter.json", "adapter.safetensors"

LABELS_FILE = "labels.txt"
"""A classifier's class names, one per line in class-id order (Triton's `label_filename`)."""
REPORT_FILE = "export_report.json"
"""What the export (or an update) that published a model's versions measured and chose."""
SOURCE_FILE = "tuneship_source.json"
"""A generator version's origin: the checkpoint and base weights it was built from."""
TUNING_REPORT, TUNING_PLOT = "tuning_report.json", "tuning.png"
UPDATES_LOG, UPDATE_REPORT = "updates.jsonl", "update_report.json"
REPORTS = (REPORT_FILE, TUNING_REPORT, TUNING_PLOT, UPDATES_LOG, UPDATE_REPORT)
"""tuneship's reports beside a model (not part of what Triton serves; scratch copies leave them out)."""
LOCK_TIMEOUT_S = 600.0
"""How long a writer waits for another to release the repository's lock before giving up."""

__all__ = ["ADAPTERS_DIR", "ADAPTER_INFO", "ADAPTER_WEIGHTS", "LABELS_FILE", "LOCK_TIMEOUT_S", "REPORTS",
           "REPORT_FILE", "SOURCE_FILE", "TUNING_PLOT", "TUNING_REPORT", "UPDATES_LOG", "UPDATE_REPORT"]
