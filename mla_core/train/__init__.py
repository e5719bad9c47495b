"""Train the embedded demo model: a small GPT-2 on Wikipedia summaries, reproducibly, on a CPU.

    python -m mla_core.train --steps 1400 --out assets/models/demo-gpt2

What one run does, top to bottom:
1. corpus: the Wikipedia summaries (`mla_core.loading.corpus`), split by document into train and
   validation with a fixed seed, tokenized with the exact GPT-2 BPE;
2. model: `mla_core.models.gpt2.GPT2` of the chosen shape, GPT-2's initialisation, fixed seed;
3. training: AdamW, linear warm-up then cosine decay, gradient clipping; the batch of step s
   is drawn by a generator seeded with (seed, s), so a run resumed from a checkpoint sees the
   same batches as one that never stopped; bfloat16 autocast for speed (master weights fp32);
   optionally some windows get a planted repeat of their own text (`--repeat-fraction`);
   at every validation check every head is scored (`mla_core.analysis.head_scores`) and the best
   previous-token and induction scores are logged, so a run shows whether heads form;
4. a checkpoint (safetensors + json, never a pickle) every `--checkpoint-every` steps;
5. the model folder (written to a temporary folder, then renamed into place): config.json,
   model.safetensors (float16, Hugging Face GPT-2 layout via `mla_core.loading.weights.save_gpt2`),
   model.safetensors.sha256, heldout_slice.json, training.json, loss_curve.png and MODEL.md.
   Every loss recorded there is measured on the float16 weights as shipped.

A fixed number of steps, never a timer: the same command gives the same model.

One module per part of that story:
- `settings`: TrainSettings and the learning-rate schedule;
- `batches`: the batch of each step, planted repeats, the sinusoidal position init;
- `losses`: sequence and validation losses, the held-out slice;
- `checkpoints`: save and resume (safetensors + json);
- `loop`: optimizer, the loss of a batch and the run itself (`train`);
- `model_folder`: the shipped folder (float16 weights, sha256, held-out slice, head scores);
- `card`: MODEL.md and loss_curve.png;
- `cli`: the command line; `python -m mla_core.train` runs `cli.main`.
"""
