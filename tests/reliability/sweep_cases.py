"""The bad-input sweep: one row per case, ``(id, command, expected exit status, expected message fragment)``.

``command`` is split like a shell line, then each word is formatted with the workspace's placeholders
(``{model}``, ``{out}``, ``{data}``, ``{file}`` a regular file, ``{ws}`` the workspace root, ...; see
``conftest.ws``). Every case must exit with the status, print one ``neuronmoe <command>: error: ...`` line
containing the fragment (case-insensitive), no traceback, and write nothing in the workspace.
docs/reliability.md holds this table with the message each case printed (``NEURONMOE_WRITE_SWEEP_DOC=1``
rewrites it).
"""
from __future__ import annotations

M = "--model {model}"
O = "--output-dir {out}"
N = f"neurons {M} {O} --device cpu --dtype float32 --no-progress --force --languages en,el,tr"
S = f"similarity {M} {O} --device cpu --dtype float32 --source en --targets el"
A = f"allocate {M} {O} --source en --targets el"
T = f"train --stage 1 {M} {O} --allocation tiny --run-name sweep --profile cpu --device cpu"
T0 = f"train --stage 1 {M} {O} --allocation tiny --profile cpu --device cpu"
TR = f"train --stage 1 {M} --output-dir {{runs}} --allocation tiny --profile cpu --device cpu"
E = f"evaluate {M} {O} --device cpu --dtype float32 --suite local --languages en,el"
P = "pipeline --output-dir {ws}/pipe --model {model}"

CASES: list[tuple[str, str, int, str]] = [
    # ---- prepare-data
    ("data-unknown-lang", f"prepare-data {M} --output-dir {{ws}}/d --new-langs xx", 2, "xx"),
    ("data-new-is-old", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --old-langs el", 2, "el"),
    ("data-zero-sentences", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --num-sentences 0", 2, "--num-sentences"),
    ("data-heldout-fraction", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --heldout-fraction 1.5", 2, "--heldout-fraction"),
    ("data-no-model", "prepare-data --model {ws}/no-model --output-dir {ws}/d --new-langs el", 2, "--model"),
    ("data-missing-config", f"prepare-data {M} --output-dir {{ws}}/d --config {{ws}}/missing.yaml", 2, "missing.yaml"),
    ("data-unknown-config-key", f"prepare-data {M} --output-dir {{ws}}/d --config {{bad_yaml}}", 2, "no_such_key"),
    ("data-missing-jsonl-source", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --source jsonl:{{ws}}/nowhere", 2, "nowhere"),
    ("data-max-tokens-0", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --max-tokens 0", 2, "--max-tokens"),
    ("data-replay-docs-negative", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --replay-docs -1", 2, "--replay-docs"),
    ("data-max-sample-tokens-0", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --max-sample-tokens 0", 2, "--max-sample-tokens"),
    ("data-max-heldout-docs-negative", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --max-heldout-docs -1", 2, "--max-heldout-docs"),
    ("data-output-under-file", f"prepare-data {M} --output-dir {{file}}/x --new-langs el", 2, "is a file"),
    # ---- neurons
    ("neurons-ap-threshold-2", f"{N} --ap-threshold 2", 2, "--ap-threshold: 2.0 is out of range [0, 1)"),
    ("neurons-ap-threshold-negative", f"{N} --ap-threshold -0.5", 2, "--ap-threshold"),
    ("neurons-top-k-0", f"{N} --top-k 0", 2, "--top-k"),
    ("neurons-batch-size-0", f"{N} --batch-size 0", 2, "--batch-size"),
    ("neurons-max-length-0", f"{N} --max-length 0", 2, "--max-length"),
    ("neurons-one-language", f"neurons {M} {O} --languages en --device cpu", 2, "at least two languages"),
    ("neurons-unknown-language", f"{N} --languages en,xx", 2, "xx"),
    ("neurons-lape-quantile", f"{N} --metric lape --lape-quantile 1.5", 2, "--lape-quantile"),
    ("neurons-lape-modules", f"{N} --metric lape --modules gate_proj", 2, "--modules"),
    ("neurons-unknown-module", f"{N} --modules foo_proj", 2, "foo_proj"),
    ("neurons-ap-chunk-0", f"{N} --ap-chunk-mb 0", 2, "--ap-chunk-mb"),
    ("neurons-no-model", f"neurons --model {{ws}}/no-model {O} --languages en,el", 2, "--model"),
    ("neurons-no-data", f"{N} --data-dir {{ws}}/no-data", 2, "no-data"),
    ("neurons-samples-changed", f"{N} --data-dir {{tampered}}", 2, "changed since"),
    ("neurons-other-tokenizer", f"{N} --data-dir {{other_tok}}", 2, "another tokenizer"),
    ("neurons-output-is-file", f"neurons {M} --output-dir {{file}} --data-dir {{data}} --languages en,el --device cpu", 2, "is a file"),
    ("neurons-output-under-file", f"neurons {M} --output-dir {{file}}/sub --data-dir {{data}} --languages en,el --device cpu", 2, "is a file"),
    ("neurons-unknown-config-key", f"{N} --config {{bad_yaml}}", 2, "no_such_key"),
    ("neurons-bad-dtype", f"{N} --dtype float8", 2, "--dtype: 'float8' is not one of"),
    # ---- similarity
    ("similarity-max-tokens-0", f"{S} --max-tokens 0", 2, "--max-tokens"),
    ("similarity-batch-size-0", f"{S} --batch-size 0", 2, "--batch-size"),
    ("similarity-max-length-0", f"{S} --max-length 0", 2, "--max-length"),
    ("similarity-budget-0", f"{S} --budget 0", 2, "--budget"),
    ("similarity-target-is-source", f"similarity {M} {O} --source en --targets en", 2, "en"),
    ("similarity-unknown-target", f"similarity {M} {O} --source en --targets xx", 2, "xx"),
    ("similarity-missing-split", f"{S} --split train --old-langs tr", 2, "tr.jsonl"),
    ("similarity-no-reference", f"{S} --reference no-such-allocation", 2, "no-such-allocation"),
    ("similarity-no-model", f"similarity --model {{ws}}/no-model {O} --source en --targets el", 2, "--model"),
    ("similarity-output-under-file", f"similarity {M} --output-dir {{file}}/x --data-dir {{data}} --source en --targets el --device cpu", 2, "is a file"),
    ("similarity-samples-changed", f"{S} --data-dir {{tampered}}", 2, "changed since"),
    # ---- allocate
    ("allocate-pair-two-targets", f"allocate {M} {O} --source en --targets el,tr --mode pair", 2, "exactly one target"),
    ("allocate-e-min-0", f"{A} --e-min 0", 2, "--e-min"),
    ("allocate-e-max-below-e-min", f"{A} --e-min 3 --e-max 2", 2, "--e-max"),
    ("allocate-uniform-0", f"allocate {M} {O} --mode uniform --num-experts 0", 2, "--num-experts"),
    ("allocate-missing-scores-csv", f"allocate {M} {O} --scores-csv {{ws}}/none.csv", 2, "none.csv"),
    ("allocate-no-neurons", f"{A} --neurons-dir {{ws}}/no-neurons", 2, "no-neurons"),
    ("allocate-nothing-selected", f"{A} --neurons-dir {{neurons_empty}}", 2, "no selected units"),
    ("allocate-unknown-target", f"allocate {M} {O} --source en --targets xx", 2, "xx"),
    ("allocate-out-under-file", f"{A} --out {{file}}/x.json", 2, "is a file"),
    ("allocate-no-model", f"allocate --model {{ws}}/no-model {O} --source en --targets el", 2, "--model"),
    ("allocate-bad-mode", f"{A} --mode biggest", 2, "--mode: 'biggest' is not one of"),
    ("allocate-name-path", f"{A} --name ../../x", 2, "--name '../../x': contains a path separator"),
    ("allocate-name-absolute", f"{A} --name {{ws}}/x", 2, "contains a path separator"),
    ("allocate-out-not-json", f"{A} --out {{ws}}/x.txt", 2, "--out: "),
    ("allocate-bootstrap-negative", f"{A} --bootstrap -1", 2, "--bootstrap"),
    ("allocate-bootstrap-uniform", f"allocate {M} {O} --mode uniform --bootstrap 10", 2, "--bootstrap: stability is measured"),
    ("allocate-sample-sizes-alone", f"{A} --sample-sizes 50,100", 2, "--sample-sizes: needs --bootstrap"),
    # ---- train
    ("train-max-steps-0", f"{T} --set max_steps=0", 2, "--set max_steps: must be >= 1"),
    ("train-max-steps-negative", f"{T} --max-steps -5", 2, "--max-steps: -5 is out of range [-1, inf)"),
    ("train-learning-rate-0", f"{T} --learning-rate 0", 2, "--learning-rate: 0.0 is out of range (0, inf)"),
    ("train-learning-rate-inf", f"{T} --learning-rate inf", 2, "--learning-rate: inf is not a finite number"),
    ("train-learning-rate-nan-set", f"{T} --set learning_rate=.nan", 2, "--set learning_rate: nan is not a finite number"),
    ("train-lpr-coef-inf", f"{T} --lpr-loss-coef inf", 2, "--lpr-loss-coef: inf is not a finite number"),
    ("train-cutoff-1", f"{T} --cutoff-len 1", 2, "--cutoff-len: 1 is out of range [2, inf)"),
    ("train-batch-size-0", f"{T} --batch-size 0", 2, "--batch-size: must be an int >= 1 or auto"),
    ("train-top-k-0", f"{T} --top-k 0", 2, "--top-k: 0 is out of range [1, inf)"),
    ("train-aux-coef-negative", f"{T} --aux-loss-coef -1", 2, "--aux-loss-coef: -1.0 is out of range [0, inf)"),
    ("train-unknown-set-key", f"{T} --set no_such_key=1", 2, "no_such_key"),
    ("train-bad-set-syntax", f"{T} --set max_steps", 2, "KEY=VALUE"),
    ("train-no-allocation", f"train --stage 1 {M} {O} --allocation no-such-alloc --profile cpu --device cpu", 2, "no-such-alloc"),
    ("train-stage2-no-adapter", f"train --stage 2 {M} {O} --allocation tiny --run-name s2 --profile cpu --device cpu", 2, "stage-1 adapter"),
    ("train-bad-run-name", f"train --stage 1 {M} {O} --allocation tiny --run-name 'a b' --profile cpu", 2, "--run"),
    ("train-no-data", f"{T} --data-dir {{ws}}/no-data", 2, "no-data"),
    ("train-missing-deepspeed", f"{T} --deepspeed {{ws}}/ds.json", 2, "ds.json"),
    ("train-unknown-language", f"{T} --languages xx", 2, "xx"),
    ("train-output-under-file", f"train --stage 1 {M} --output-dir {{file}}/x --allocation {{out}}/allocation/tiny.json --data-dir {{data}} --profile cpu", 2, "is a file"),
    ("train-resume-damaged-checkpoint", f"train --stage 1 {M} --output-dir {{runs}} --allocation tiny --run-name damaged --profile cpu --device cpu --resume", 2, "no usable checkpoint"),
    ("train-resume-and-overwrite", f"{T} --resume --overwrite", 2, "--resume and --overwrite exclude each other"),
    ("train-bad-stage", f"train --stage 3 {M} {O}", 2, "--stage: 3 is not one of 1, 2"),
    # ---- issue 24: names that become paths, --overwrite only of our own run folders
    ("train-run-name-dotdot-overwrite", f"{T0} --run-name .. --overwrite", 2, "--run-name '..': is not a name"),
    ("train-run-name-dot-overwrite", f"{T0} --run-name . --overwrite", 2, "'.': is not a name"),
    ("train-run-name-path", f"{T0} --run-name ../../x", 2, "contains a path separator"),
    ("train-run-name-absolute", f"{T0} --run-name {{ws}}/x --overwrite", 2, "contains a path separator"),
    ("train-run-name-dash", f"{T0} --run-name=-x", 2, "starts with a dash"),
    ("train-overwrite-symlink", f"{TR} --run-name link --overwrite", 2, "is a symbolic link; nothing deleted"),
    ("train-overwrite-foreign-folder", f"{TR} --run-name foreign --overwrite", 2, "holds no manifest or lock"),
    ("evaluate-run-name-path", f"{E} --run-name ../../../x", 2, "contains a path separator"),
    ("evaluate-run-name-dotdot", f"{E} --run-name ..", 2, "is not a name"),
    ("analyze-run-path", f"analyze-experts {M} {O} --run ../x --device cpu", 2, "contains a path separator"),
    ("similarity-name-path", f"{S} --name ../x", 2, "contains a path separator"),
    # ---- issue 24: every reader checks the sha256 its producing stage recorded; manifests that are not manifests
    ("allocate-selected-truncated", f"{A} --neurons-dir {{neurons_truncated}}", 2, "selected_el.csv: changed since"),
    ("allocate-selected-not-utf8", f"{A} --neurons-dir {{neurons_latin1}}", 2, "selected_el.csv"),
    ("train-data-replaced", f"{T} --data-dir {{tampered}}", 2, "train/el.jsonl: changed since"),
    ("evaluate-udhr-replaced", "evaluate --model {model} --output-dir {tampered_out} --device cpu --dtype float32 --suite "
     "local --languages en,el", 2, "udhr/el.jsonl: changed since"),
    ("neurons-manifest-list", f"{N} --data-dir {{data_manifest_list}}", 2, "not a manifest"),
    ("neurons-manifest-files-list", f"{N} --data-dir {{data_files_list}}", 2, "malformed manifest ('files' is a list"),
    ("train-manifest-list", f"{T} --data-dir {{data_manifest_list}}", 2, "not a manifest"),
    ("similarity-manifest-files-list", f"{S} --data-dir {{data_files_list}}", 2, "malformed manifest"),
    # ---- issue 24: damaged adapters, adapters of another base (never a hub lookup of a local path)
    ("evaluate-adapter-no-weights", f"{E} --adapter {{adapter_no_weights}}", 2, "adapter_model.safetensors: missing"),
    ("evaluate-adapter-truncated", f"{E} --adapter {{adapter_truncated}}", 2, "adapter_model.safetensors: truncated"),
    ("evaluate-adapter-other-base", f"{E} --adapter {{adapter_other_base}}", 2, "made for another base model"),
    ("export-adapter-no-weights", f"export --adapter {{adapter_no_weights}} --out {{ws}}/exported {M}", 2,
     "adapter_model.safetensors: missing"),
    ("export-adapter-truncated", f"export --adapter {{adapter_truncated}} --out {{ws}}/exported {M}", 2, "truncated"),
    ("export-adapter-other-base", f"export --adapter {{adapter_other_base}} --out {{ws}}/exported {M}", 2,
     "made for another base model"),
    ("train-init-adapter-no-weights", f"train --stage 2 {M} {O} --allocation tiny --run-name s2 --profile cpu --device cpu "
     "--init-adapter {adapter_no_weights}", 2, "adapter_model.safetensors: missing"),
    ("train-init-adapter-truncated", f"train --stage 2 {M} {O} --allocation tiny --run-name s2 --profile cpu --device cpu "
     "--init-adapter {adapter_truncated}", 2, "truncated"),
    ("train-init-adapter-other-base", f"train --stage 2 {M} {O} --allocation tiny --run-name s2 --profile cpu --device cpu "
     "--init-adapter {adapter_other_base}", 2, "made for another base model"),
    ("analyze-adapter-truncated", f"analyze-experts {M} {O} --adapter {{adapter_truncated}} --device cpu", 2, "truncated"),
    ("report-only-partial", "report --output-dir {ws}/eval-partial", 2, "killed is partial (no manifest.json)"),
    # ---- issue 24: absurd numbers are refused with the allowed range
    ("allocate-absurd-expert-counts", f"train --stage 1 {M} {O} --allocation {{alloc_huge}} --run-name sweep --profile cpu "
     "--device cpu", 2, "in [1, 256]"),
    ("allocate-scores-1e308", f"allocate {M} {O} --scores-csv {{scores_huge}}", 2, "in [0, 1e+15]"),
    ("allocate-e-max-huge", f"{A} --e-max 100000", 2, "out of range [1, 256]"),
    ("allocate-uniform-huge", f"allocate {M} {O} --mode uniform --num-experts 100000", 2, "--num-experts"),
    ("allocate-nan-ap", f"{A} --neurons-dir {{neurons_nan}}", 2, "out of range [0, 1]"),
    ("evaluate-local-sizes-negative", f"{E} --local-sizes cloze_items=-1", 2, "--local-sizes cloze_items"),
    ("data-min-sample-chars-negative", f"prepare-data {M} --output-dir {{ws}}/d --new-langs el --min-sample-chars -5", 2,
     "--min-sample-chars"),
    # ---- issue 24: --device that this machine does not have, in every stage
    ("neurons-device-missing", f"neurons {M} {O} --languages en,el --device cuda:99", 2, "--device cuda:99"),
    ("similarity-device-missing", f"similarity {M} {O} --source en --targets el --device cuda:99", 2, "--device cuda:99"),
    ("allocate-device-missing", f"{A} --device cuda:99", 2, "--device cuda:99"),
    ("train-device-missing", f"train --stage 1 {M} {O} --allocation tiny --run-name sweep --profile cpu --device cuda:99", 2,
     "--device cuda:99"),
    ("evaluate-device-missing", f"evaluate {M} {O} --suite local --languages en,el --device cuda:99", 2, "--device cuda:99"),
    ("analyze-device-missing", f"analyze-experts {M} {O} --run tiny --device cuda:99", 2, "--device cuda:99"),
    ("export-device-missing", f"export --adapter {{ws}}/no-adapter --out {{ws}}/exported {M} --device cuda:99", 2,
     "--device cuda:99"),
    ("neurons-device-unknown", f"neurons {M} {O} --languages en,el --device tpu9", 2, "--device 'tpu9'"),
    # ---- evaluate, report
    ("evaluate-limit-0", f"{E} --limit 0", 2, "--limit"),
    ("evaluate-unknown-suite", f"evaluate {M} --output-dir {{ws}}/eval-out --suite nope", 2, "nope"),
    ("evaluate-unknown-task", f"evaluate {M} --output-dir {{ws}}/eval-out --tasks no_such_task_xyz", 2, "no_such_task_xyz"),
    ("evaluate-no-adapter", f"{E} --adapter {{ws}}/no-adapter", 2, "no-adapter"),
    ("evaluate-no-model", "evaluate --model {ws}/no-model --output-dir {out} --suite local --languages en", 2, "--model"),
    ("evaluate-fewshot-negative", f"{E} --num-fewshot -1", 2, "--num-fewshot"),
    ("evaluate-batch-size-0", f"{E} --batch-size 0", 2, "--batch-size"),
    ("evaluate-output-under-file", f"evaluate {M} --output-dir {{file}}/x --suite local --languages en,el --device cpu", 2, "a-file"),
    ("report-no-runs", "report --output-dir {ws}/no-eval", 2, "no runs"),
    ("report-broken-results", "report {broken_json}", 2, "broken.json"),
    # ---- analyze-experts, figures, export, model
    ("analyze-no-run", f"analyze-experts {M} {O} --run no-such-run --device cpu", 2, "no-such-run"),
    ("analyze-threshold-2", f"analyze-experts {M} {O} --run tiny --device cpu --threshold 2", 2, "--threshold"),
    ("analyze-limit-negative", f"analyze-experts {M} {O} --run tiny --device cpu --limit -1", 2, "--limit"),
    ("analyze-batch-size-0", f"analyze-experts {M} {O} --run tiny --device cpu --batch-size 0", 2, "--batch-size"),
    ("allocate-similarity-budget-0", f"allocate {M} {O} --mode similarity --budget 0", 2, "--budget"),
    ("similarity-budget-negative", f"{S} --budget -3", 2, "--budget"),
    ("train-replay-max-samples-0", f"{T} --replay-max-samples 0", 2, "--replay-max-samples: 0 is out of range [1, inf)"),
    ("export-no-adapter", f"export --adapter {{ws}}/no-adapter --out {{ws}}/exported {M}", 2, "no-adapter"),
    ("export-bad-dtype", f"export --adapter {{ws}}/no-adapter --out {{ws}}/exported {M} --dtype int4", 2, "--dtype: 'int4' is not one of"),
    ("model-unknown", "model info {ws}/no-model", 2, "no-model"),
    # ---- pipeline (checked before its first stage)
    ("pipeline-unknown-target", f"{P} --target xx", 2, "xx"),
    ("pipeline-two-targets", f"{P} --target el,tr", 2, "one language"),
    ("pipeline-target-is-source", f"{P} --target en --source en", 2, "old language"),
    ("pipeline-zero-sentences", f"{P} --num-sentences 0", 2, "--num-sentences"),
    ("pipeline-negative-analysis-limit", f"{P} --analysis-limit -1", 2, "--analysis-limit"),
    ("pipeline-no-model", "pipeline --output-dir {ws}/pipe --model {ws}/no-model", 2, "--model"),
    ("pipeline-unknown-suite", f"{P} --eval-suite nope", 2, "nope"),
    ("pipeline-output-under-file", "pipeline --output-dir {file}/x --model {model}", 2, "is a file"),
    ("pipeline-unknown-only", f"{P} --only nope --dry-run", 2, "unknown stage"),
    ("reproduce-unknown-target", "reproduce-paper --dry-run --targets xx --output-dir {ws}/paper", 2, "xx"),
    ("reproduce-nproc-0", "reproduce-paper --dry-run --nproc 0 --output-dir {ws}/paper", 2, "--nproc"),
    ("reproduce-unknown-gpu", "reproduce-paper --dry-run --gpu X100 --output-dir {ws}/paper", 2, "--gpu"),
    ("reproduce-mfu-above-1", "reproduce-paper --dry-run --mfu 1.5 --output-dir {ws}/paper", 2, "--mfu"),
    ("gate-bad-item", "allocation-gate --output-dir {ws}/gate --allocations neuronmoe-el", 2, "NAME=KIND/TARGET"),
    ("gate-missing-allocation", "allocation-gate --output-dir {ws}/gate --allocations neuronmoe-el=neuronmoe/el", 2,
     "run the allocation"),
]
