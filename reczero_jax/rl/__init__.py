"""GRPO and supervised (RecOne cold-start) training: math, update step, trainer."""
