"""python -m reczero_jax.main --config configs/baselines.py \
--config.data.source=SOURCE --config.data.path=PATH --config.workdir=DIR

Classical rating baselines (means, bias-only, biased MF) on one data source.
Examples:
  --config.data.source=amazon2014 --config.data.path=reviews_Musical_Instruments_5.json.gz
  --config.data.source=movielens100k --config.data.path=ml-100k/
  --config=configs/baselines.py:synthetic      (the generated world; no files needed)
  --config=configs/baselines.py:small          (a tiny, fast run for smoke tests)
Prints a MAE / RMSE table and writes DIR/results.json.

The same data section, prepared once as a TFDS dataset (mode 'prepare'; any config works,
e.g. the training config whose data section it is):
  python -m reczero_jax.main --config configs/baselines.py --config.mode=prepare \
      --config.data.tfds_data_dir=DIR   (local or gs://; prints the examples per split)
The training and evaluation modes then read it lazily when given the same data section and
tfds_data_dir; this mode (baselines) always reads the raw files (it fits the ratings table).
"""

import ml_collections


def get_config(arg=None):
    """``arg``: '' / None for the defaults, or a comma-separated list of 'synthetic', 'small'."""
    flags = {a for a in (arg or "").split(",") if a}
    config = ml_collections.ConfigDict()
    config.mode = "baselines"
    config.seed = 0
    config.workdir = "/tmp/reczero_baselines"

    # ---- Data: where ratings come from and how examples are cut.
    config.data = ml_collections.ConfigDict()
    config.data.source = "synthetic"  # synthetic | amazon2014 | amazon2018 | amazon2023 | yelp
    #                                 | movielens100k | movielens1m
    config.data.path = ""  # reviews / ratings file (MovieLens: folder)
    config.data.meta_path = ""  # optional item file (Amazon meta, Yelp business)
    config.data.split = "leave_last_out"  # or global_time
    config.data.valid_fraction = 0.1  # global_time only
    config.data.test_fraction = 0.1  # global_time only
    config.data.history_len = 10  # user history entries shown
    config.data.item_history_len = 10  # item reviews by other users shown
    config.data.review_chars = 400  # reviews cut to this many characters
    config.data.min_history_total = 0  # 5 = the reference code's filter
    config.data.tfds_data_dir = ""  # mode=prepare writes the TFDS dataset here

    # ---- Synthetic world (data.source = 'synthetic').
    config.data.synthetic = ml_collections.ConfigDict()
    config.data.synthetic.num_users = 2000
    config.data.synthetic.num_items = 200
    config.data.synthetic.interactions_per_user = 20
    config.data.synthetic.num_genres = 6
    config.data.synthetic.seed = 0
    config.data.synthetic.noise = 0.6  # rating noise std, stars
    config.data.synthetic.user_bias_std = 0.4
    config.data.synthetic.quality_std = 0.6
    config.data.synthetic.taste_weight = 1.0
    config.data.synthetic.price_weight = 0.5
    config.data.synthetic.teacher_noise = 0.5  # noise on the teacher's rating, traces only

    # ---- Prompts (used by the LLM modes; kept here so one data section serves all).
    config.data.prompt = ml_collections.ConfigDict()
    config.data.prompt.mode = "chat"  # chat | raw
    config.data.prompt.variant = "four_step"  # four_step | rating_only | single_think
    config.data.prompt.max_prompt_tokens = 0  # 0 = unlimited
    config.data.prompt.raw_template = "{instruction}\n\n{inputs}\n"

    # ---- Baselines.
    config.baselines = ml_collections.ConfigDict()
    config.baselines.bias_l2 = 5.0
    config.baselines.bias_sweeps = 10
    config.baselines.mf_dim = 16
    config.baselines.mf_l2 = 0.1
    config.baselines.mf_lr = 0.01
    config.baselines.mf_epochs = 60
    config.baselines.mf_batch_size = 1024
    config.baselines.mf_init_std = 0.1
    config.baselines.patience = 5

    # ---- Switches.
    if "synthetic" in flags:
        config.data.source = "synthetic"
    if "small" in flags:
        config.data.synthetic.num_users = 200
        config.data.synthetic.num_items = 50
        config.baselines.mf_epochs = 5
    return config
