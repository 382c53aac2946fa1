"""Training. trainer.py is the loop (train -> train_one_epoch -> validate_and_keep_best); recipe.py completes the
config (every automatic choice, with its reason); setup.py builds what the loop needs; schedule.py, state.py
(resume), guards.py (faults), console.py (plan, progress) and environment.py each hold one concern;
distributed.py, finetune.py, distill.py and objective.py are the options around it."""
