"""GPU smoke check (run by hand on a GPU host): bf16 training through the trainer, then ONNX export.

    python scripts/gpu_smoke.py --tokenizer PATH_TO_TOKENIZER_FOLDER --out DIR

Trains a tiny randomly initialised BERT on synthetic reviews with `--precision auto` (bf16 where the GPU
has it), checks the run really used bf16 on CUDA and learned the task, then exports the checkpoint to
ONNX and validates it against PyTorch. Prints one JSON line of findings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch
    from conftest import synthetic_reviews, write_csv
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tuneship.trainer import TextTrainConfig, train
    from tuneship.trainer.run import precision_flags

    findings: dict[str, object] = {"cuda": torch.cuda.is_available(),
                                   "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                                   "torch": torch.__version__, "precision_flags": precision_flags("auto")}
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(args.out / "base"))
    tokenizer.save_pretrained(str(args.out / "base"))
    train_file = write_csv(args.out / "train.csv", synthetic_reviews(2000, seed=1))
    eval_file = write_csv(args.out / "eval.csv", synthetic_reviews(200, seed=2))
    started = time.monotonic()
    result = train(TextTrainConfig(data=str(train_file), eval_file=str(eval_file), model=str(args.out / "base"),
                               output=str(args.out / "ckpt"), epochs=3, learning_rate=3e-3, warmup_ratio=0.0,
                               batch_size=32, max_length=32, seed=7, precision="auto"))
    findings["train_seconds"] = round(time.monotonic() - started, 1)
    findings["accuracy"] = result.metrics["accuracy"]
    manifest = json.loads((args.out / "ckpt" / "tuneship.json").read_text())
    findings["manifest_precision"] = manifest["hyperparameters"]["precision"]

    from transformers import AutoModelForSequenceClassification

    from tuneship.exporter.text.onnx_export import export_onnx
    from tuneship.exporter.text.validation import torch_logits, validate

    model = AutoModelForSequenceClassification.from_pretrained(str(args.out / "ckpt")).eval()
    names = export_onnx(model, tokenizer, args.out / "model.onnx")
    texts = [line.split(",")[0] for line in eval_file.read_text().splitlines()[1:65]]
    reference = torch_logits(model, tokenizer, texts, 32)
    check = validate(args.out / "model.onnx", reference, tokenizer, names, texts, 32, 1e-3)
    findings["onnx_max_abs_diff"] = check.max_abs_diff
    findings["onnx_label_agreement"] = check.label_agreement
    print("GPU_SMOKE " + json.dumps(findings))
    ok = findings["accuracy"] > 0.9 and check.passed  # type: ignore[operator]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
