// dsv3 train: train a DeepSeek-V3-architecture model (see src/train/trainer.h).
#include "cli/command.h"
#include "train/trainer.h"

namespace dsv3::cli {
namespace {

const bool registered = register_command(
    {"train",
     "Train a DeepSeek-V3-architecture model with V3's recipe (MTP objective, aux-loss-free balancing, AdamW)",
     [](CLI::App& app) {
       auto o = std::make_shared<TrainOptions>();
       app.footer(
           "Starts from --config (random init, std --init-std) or --init (any checkpoint dsv3 loads; FP8 is dequantised "
           "into float32 master weights). --out always holds the latest complete checkpoint as a Hugging Face directory "
           "(plus trainer_state/); --resume continues it bit for bit up to --steps.\n"
           "Loss = mean CE + mtp-weight * mean MTP CE + balance-alpha * sequence-wise balance loss.\n"
           "Example: dsv3 data --ids docs.jsonl --out data && dsv3 train --config configs/demo-tiny.json --data data "
           "--out run --steps 200 --batch 8 --seq-len 128 --lr 1e-3 --warmup 20\n"
           "Data parallel: mpirun -np K dsv3 train ... runs K ranks, each on --batch/K of the sequences of every step "
           "(--batch stays the global batch, so the run equals one process's); gradients are all-reduced, only rank 0 "
           "prints and writes checkpoints. --zero1 also shards the optimizer state.");
       app.add_option("--config", o->config_path, "config.json to train from scratch");
       app.add_option("--init", o->init_dir, "Checkpoint directory to start from");
       app.add_option("--data", o->data_dir, "Token data directory made by `dsv3 data`")->required();
       app.add_option("--out", o->out_dir, "Output directory (latest complete checkpoint)")->required();
       app.add_option("--tokenizer", o->tokenizer_dir, "Copy tokenizer files from here into checkpoints (default: from --init)");
       app.add_option("--steps", o->steps, "Optimizer steps in all (a resumed run continues up to this)")->capture_default_str();
       app.add_option("--batch", o->batch, "Sequences per step")->capture_default_str();
       app.add_option("--seq-len", o->seq_len, "Tokens per sequence")->capture_default_str();
       app.add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
       app.add_option("--min-lr", o->min_lr, "Learning rate after the cosine decay (default lr/10)");
       app.add_option("--warmup", o->warmup, "Linear warmup steps")->capture_default_str();
       app.add_option("--decay-start", o->decay_start, "Step where the cosine decay starts (-1: constant LR)")->capture_default_str();
       app.add_option("--decay-steps", o->decay_steps, "Length of the cosine decay (0: until --steps)")->capture_default_str();
       app.add_option("--optimizer", o->optimizer, "adamw, or sgd (plain, no momentum)")->capture_default_str();
       app.add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
       app.add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
       app.add_option("--adam-eps", o->adam_eps, "AdamW epsilon")->capture_default_str();
       app.add_option("--weight-decay", o->weight_decay, "Decoupled weight decay (matrices only)")->capture_default_str();
       app.add_option("--clip", o->clip, "Global gradient-norm clip (0: off)")->capture_default_str();
       app.add_option("--moments", o->moments, "AdamW moment dtype: f32 or bf16")->capture_default_str();
       app.add_option("--precision", o->precision,
                      "GEMM inputs of every Linear inside the blocks (forward, dgrad, wgrad): fp32; bf16 (rounded, "
                      "fp32 accumulation); or fp8 (exact E4M3 emulation of DeepSeek-V3's recipe: 1x128 activation "
                      "tiles, 128x128 weight blocks, 128x1 tiles for the weight gradient). Embedding, heads, router, "
                      "norms and attention stay fp32; master weights and gradients are fp32")
           ->capture_default_str();
       app.add_option("--mtp-weight", o->mtp_weight, "lambda: weight of the MTP loss")->capture_default_str();
       app.add_option("--balance-alpha", o->balance_alpha, "alpha: weight of the sequence-wise balance loss")->capture_default_str();
       app.add_option("--bias-update", o->bias_update, "gamma: router bias update speed (0: off)")->capture_default_str();
       app.add_option("--init-std", o->init_std, "Standard deviation of the random init")->capture_default_str();
       app.add_option("--seed", o->seed, "Seed of the init and the data order")->capture_default_str();
       app.add_option("-t,--threads", o->threads, "Threads (default: all cores)");
       app.add_option("--save-every", o->save_every, "Checkpoint every K steps (0: only at the end)")->capture_default_str();
       app.add_option("--val-every", o->val_every, "Validation every K steps (0: only at the last step)")->capture_default_str();
       app.add_option("--val-seqs", o->val_seqs, "Validation sequences (0: all)")->capture_default_str();
       app.add_option("--save-dtype", o->save_dtype, "Weights in checkpoints: f32, bf16 or fp8 (128x128 blocks)")->capture_default_str();
       app.add_option("--log", o->log_path, "Also append the JSON lines to this file");
       app.add_option("--dump-grads", o->dump_grads, "Write the first step's gradients as F32 safetensors here");
       app.add_flag("!--untie-mtp", o->share_mtp,
                    "Train the MTP modules' embed_tokens and shared_head.head as their own parameters. By default they "
                    "are the main model's embedding and lm_head, as in DeepSeek-V3 (one parameter, gradients summed; "
                    "checkpoints hold copies)");
       app.add_flag("--mtp-only", o->mtp_only,
                    "Train only the MTP modules (with --init: add or improve MTP on a trained model). The main "
                    "model is frozen: its forward runs, it gets no gradients, updates or router-bias moves, so "
                    "its outputs stay exactly as they were");
       app.add_option("--mtp-targets", o->mtp_targets,
                      "What MTP module k learns at position i: data (token i+2+k of the text, V3's objective) or "
                      "main (the main model's greedy prediction of that token: self-distillation for higher "
                      "speculative-decoding acceptance, best with --mtp-only). The log's mtp_agree is the share of "
                      "MTP predictions equal to the main model's")
           ->capture_default_str();
       app.add_flag("--resume", o->resume, "Continue from the checkpoint in --out");
       app.add_flag("--zero1", o->zero1,
                    "Under mpirun: each rank keeps the AdamW moments of 1/K of the parameters and updates that "
                    "slice (reduce-scatter, local update, all-gather), as ZeRO stage 1");
       app.add_flag("--force", o->force, "Start over even if --out holds something");
       app.add_flag("--json", o->json, "One JSON object per step on stdout");
       app.add_flag("!--no-shuffle", o->shuffle, "Read the sequences in order instead of a seeded shuffle per epoch");
       return [o] { return run_training(*o); };
     }});

}  // namespace
}  // namespace dsv3::cli
