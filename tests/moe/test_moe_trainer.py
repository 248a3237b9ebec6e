"""A 2-step HF Trainer run with the MoE losses added saves a checkpoint that reloads."""
from __future__ import annotations

import peft
import torch
from torch.utils.data import Dataset

from neuronmoe.moe import MoEConfig
from neuronmoe.testing import tiny_model


class _Data(Dataset):
    def __init__(self, n=8, t=12):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 300, (n, t), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        ids = self.ids[i]
        flags = torch.full_like(ids, i % 2)  # odd rows: old-language tokens
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone(), "lang_flags": flags}


def test_trainer_two_steps_checkpoint_reloads(tmp_path):
    from transformers import Trainer, TrainingArguments

    seen = []

    class MoETrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            out = model(**inputs)
            seen.append((out.aux_loss.item(), out.lpr_loss.item()))
            loss = out.loss + out.moe_loss
            return (loss, out) if return_outputs else loss

    model = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=[3, 1, 2]))
    router0 = model.base_model.model.model.layers[0].mlp.moe_router["default"].weight.detach().clone()
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=2, save_steps=2, per_device_train_batch_size=4,
        learning_rate=1e-2, report_to=[], use_cpu=True, remove_unused_columns=False, logging_steps=1,
        disable_tqdm=True,
    )
    trainer = MoETrainer(model=model, args=args, train_dataset=_Data())
    trainer.train()
    assert len(seen) == 2 and all(a > 0 for a, _ in seen) and any(l > 0 for _, l in seen)
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "adapter_config.json").is_file()
    trained = model.base_model.model.model.layers[0].mlp.moe_router["default"].weight.detach()
    assert not torch.allclose(trained, router0)

    ids = _Data().ids[:2]
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    loaded = peft.PeftModel.from_pretrained(tiny_model("llama"), ckpt)
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, ref, atol=1e-6)

    # resume from the checkpoint in a fresh model: the adapter weights come back before step 3
    fresh = peft.get_peft_model(tiny_model("llama"), MoEConfig(experts_per_layer=[3, 1, 2]))
    args.max_steps = 3
    resumed = MoETrainer(model=fresh, args=args, train_dataset=_Data())
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 3 and (tmp_path / "run" / "checkpoint-3").is_dir()
