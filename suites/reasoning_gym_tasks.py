"""The 96 Reasoning Gym tasks the harness uses at full scale, and where the list comes from.

STATUS: UNCONFIRMED. According to this project's reference, the ProRL paper (arXiv 2505.24864) uses
96 tasks, about 37k training items and 100 held-out samples per task, but it prints no list. The list below is a reconstruction from public
code. The evidence is strong but circumstantial. Nothing in the paper or the model card names this
script as the one used.

Source
------
github.com/yidong72/reasoning-gym, branch `create_data`, head commit
3f64870ed6a5bc553adde923a3e017d10e4441e5 (2025-03-17), file `scripts/generate_data.py`.
Yi Dong, the fork's owner, is a ProRL co-author; the branch's commits are signed
yidong@nvidia.com. The branch forks upstream open-thought/reasoning-gym
at 9c581f1be11fe5a67d78dc9ac3c95c0926061f0a ("Mahjong Puzzle (#241)", 2025-03-01, package
`__version__` 0.1.13) and never merges upstream again. The script:
  * iterates over `sorted(reasoning_gym.factory.DATASETS)` after `import reasoning_gym.code.bf`;
  * for each dataset draws `create_dataset(name, size=1250, seed=42)`, keeps the first 500 distinct
    questions (sokoban: 100 items, no deduplication) and splits them 80/20 into train and test,
    which gives 400 train and 100 test items per task;
  * appends "provide the answer in the following format: <answer>answer here</answer>" to every
    question.
The branch also has a reward server (`scripts/host_reward_server.py`, `utils.ScoreAnswer`). It takes
the content of the last <answer> tag and passes it to the dataset's `score_answer`, which gives a
continuous reward. `suites.reasoning_gym.score` works the same way.
At that commit `DATASETS` holds exactly 96 names. `composite` is registered in
`reasoning_gym/composite.py`, and `import reasoning_gym` does not import that module, so `composite`
is not in `DATASETS`. Running the script's deduplication on that tree (2026-11, this repository's
venv) gives 36,656 train items over 95 of the tasks. `group_anagrams`'s data file is missing from
the stored copy, and its 400 would bring the total to 37,056, which matches the paper's "37k". Test
items number 100 per task, except where the default question space is small: tower_of_hanoi 18,
string_splitting and string_synthesis 44, codeio 40, sokoban 20.
Secondary: NVIDIA-NeMo/Gym PR #113 (github.com/NVIDIA-NeMo/Gym/pull/113) says its reasoning-gym
environments are "also used in ProRL", but it lists no task set for ProRL.

Mapping to the installed reasoning-gym (0.1.25)
-----------------------------------------------
One name changed: `palindrome` became `palindrome_generation` (upstream a49463c3, 2025-03-10). The
other 95 names are unchanged. The harness uses each task's installed default config. Defaults and
generators have changed since March 2025, so these are ProRL's tasks, not ProRL's items.

Known problems, checked by tests/test_reasoning_gym_tasks.py
------------------------------------------------------------
`HELDOUT_FRACTION` gives per-task overrides where the default 0.3 yields fewer than 100 distinct
eval questions. `TOO_FEW_QUESTIONS` lists tasks that cannot yield 100 at any fraction.
`ANSWER_FORM_MISMATCH` lists tasks whose `answer` field is not a scorable answer (wrapped in
<answer> tags it does not score 1.0). `GENERATION_FAILS` lists tasks that raise inside the suite's
generator. `CAVEATS` notes problems that the tests do not assert.
"""

from __future__ import annotations

PRORL_TASKS: tuple[str, ...] = (
    # algebra (6)
    "complex_arithmetic", "intermediate_integration", "polynomial_equations",
    "polynomial_multiplication", "simple_equations", "simple_integration",
    # algorithmic (33)
    "ab", "base_conversion", "binary_alternation", "binary_matrix", "caesar_cipher",
    "count_primes", "cryptarithm", "game_of_life", "graph_color", "group_anagrams",
    "isomorphic_strings", "jugs", "letter_counting", "letter_jumble", "manipulate_matrix",
    "number_filtering", "number_sorting", "palindrome_generation", "palindrome_partitioning",
    "pool_matrix", "ransom_note", "rotate_matrix", "rotten_oranges", "sentence_reordering",
    "spell_backward", "spiral_matrix", "string_insertion", "string_manipulation",
    "string_splitting", "string_synthesis", "word_ladder", "word_sequence_reversal",
    "word_sorting",
    # arc (3)
    "arc_1d", "arc_agi", "rearc",
    # arithmetic (18)
    "basic_arithmetic", "bitwise_arithmetic", "calendar_arithmetic", "chain_sum", "count_bits",
    "decimal_arithmetic", "decimal_chain_sum", "dice", "fraction_simplification", "gcd",
    "gsm_symbolic", "lcm", "leg_counting", "number_format", "power_function",
    "prime_factorization", "products", "time_intervals",
    # code (2)
    "bf", "codeio",
    # cognition (6)
    "color_cube_rotation", "figlet_font", "needle_haystack", "number_sequence",
    "rectangle_count", "rubiks_cube",
    # games (13)
    "countdown", "emoji_mystery", "futoshiki", "knight_swap", "mahjong_puzzle", "maze",
    "mini_sudoku", "n_queens", "rush_hour", "sokoban", "sudoku", "tower_of_hanoi", "tsumego",
    # geometry (2)
    "advanced_geometry", "simple_geometry",
    # graphs (5)
    "course_schedule", "family_relationships", "largest_island", "quantum_lock", "shortest_path",
    # induction (1)
    "list_functions",
    # logic (7)
    "aiw", "circuit_logic", "knights_knaves", "propositional_logic", "self_reference",
    "syllogism", "zebra_puzzles",
)

_LATER = "added upstream after the ProRL data snapshot (fork base 2025-03-01)"

EXCLUDED: dict[str, str] = {
    "acre": f"{_LATER}: open-thought/reasoning-gym c8c39307, 2025-03-09",
    "boxnet": f"{_LATER}: open-thought/reasoning-gym fa7d8e66, 2025-03-14",
    "coin_flip": f"{_LATER}: open-thought/reasoning-gym b0815043, 2025-09-06",
    "composite": "meta-dataset that mixes other datasets and needs a `datasets` config; not in "
                 "DATASETS at the snapshot (reasoning_gym.composite was not imported)",
    "game_of_life_halting": f"{_LATER}: open-thought/reasoning-gym 07dc01ad, 2025-03-07",
    "kakurasu": f"{_LATER}: open-thought/reasoning-gym c2fdb119, 2025-06-08",
    "modulo_grid": f"{_LATER}: open-thought/reasoning-gym cbfdf097, 2025-03-07",
    "path_star": f"{_LATER}: open-thought/reasoning-gym 21e6d2a9, 2026-03-28",
    "puzzle24": f"{_LATER}: open-thought/reasoning-gym f3ee9a91, 2025-03-05",
    "survo": f"{_LATER}: open-thought/reasoning-gym 602e4be0, 2025-06-08",
}

HELDOUT_FRACTION: dict[str, float] = {
    # Both default configs have 216 distinct questions. The smallest fraction (in steps of 0.01)
    # that gives >= 100 eval questions, with the split hashing the canonical problem, is 0.60 for
    # string_splitting (104 at 0.6) and 0.56 for string_synthesis (101 at 0.6).
    "string_splitting": 0.6,
    "string_synthesis": 0.6,
}
"""Per-task `heldout_fraction` overrides; every other task uses the default 0.3."""

TOO_FEW_QUESTIONS: dict[str, str] = {
    "tower_of_hanoi": "default config (3-7 disks, 3-4 pegs, ordered start/end peg) has only 90 "
                      "distinct questions, so at most 72 can be eval questions even at "
                      "heldout_fraction=1.0. ProRL's own split had 18 test items. Widening the "
                      "config changes the task: max_disks=10, max_pegs=5 gives 304 questions and "
                      "needs heldout_fraction 0.47",
}
"""Tasks that cannot yield 100 distinct held-out questions with their default config. Under preset
prorl96 they are the suite's small tasks (`ProceduralSuite.small_tasks`): a split gets every distinct
question of theirs it holds, fewer than the other tasks' share (tower_of_hanoi at heldout 0.3: 16 eval
and 9 validation questions of its 90), so `eval_items: 9600` builds 9,516 items and the domain score,
a mean over tasks, still weighs the task as one of 96."""

ANSWER_FORM_MISMATCH: dict[str, str] = {
    "graph_color": "answer is None (many colourings are valid). json.dumps(metadata['possible_answer']) "
                   "scores 1.0",
    "propositional_logic": "answer is None (any valid conclusion counts). metadata['example_answer'] "
                           "scores 1.0",
    "rubiks_cube": "answer is None (the scorer simulates the moves). "
                   "metadata['example_correct_answer'] scores 1.0; 'None' scores 0.01",
    "rush_hour": "answer is None and the entry stores no solution (only min_moves). The scorer "
                 "simulates the moves; 'None' scores 0.01",
}
"""Tasks whose `answer` wrapped in <answer> tags does not score 1.0. The suite's supervised target
(`<answer>{answer}</answer>`) is therefore wrong for these tasks."""

GENERATION_FAILS: dict[str, str] = {}
"""Tasks whose generator cannot be used by the suite. Fixed in suites/reasoning_gym.py: word_ladder
(refused sizes above 20,000: datasets are now made in chunks of 10,000) and maze (about 1 draw in
1,500 raised RuntimeError: failed draws are now skipped)."""
"""Tasks that raise inside `ReasoningGymSuite.items` at the seeds the tests use."""

CAVEATS: dict[str, str] = {
    "codeio": "generates I/O pairs by exec'ing Python from its data file. The snippets print to "
              "stdout and write files (file_*.txt, planet.com, test_dir/, ...) into the current "
              "directory; the suite runs every generator call in a scratch directory for that. "
              "About 6 in 20000 draws raise (seed 0, index 8165: TypeError, int64 not JSON "
              "serializable)",
    "knight_swap": "slow generator: about 1-2 s per draw on this 2-core machine",
    "futoshiki": "slow generator: about 0.5-1 s per draw",
}
"""Problems the tests do not assert, which matter at full scale."""
