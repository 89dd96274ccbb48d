# The two commands: `make run` and `make test`. Each builds .venv if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
EXTRAS ?= dev,rl,synth,serve,ray

.PHONY: run test env clean bench-speed

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, from the pinned CPU build, so nothing later resolves a CUDA build
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

env: $(STAMP)

# The main job on the embedded default (no external data): train a small adaptive
# scheduler on the built-in workloads and their reshaped (wide:) variants (a few minutes
# on 2 cores: the best heuristic of each episode as teacher, then PPO; the validation
# curve goes from the random network to the cloned one and on through PPO), then
# benchmark it beside the heuristics and the model shipped with the package.
run: $(STAMP)
	$(BIN)/autoflow train --workloads builtin:philly-mix,builtin:shared-gpu,wide:builtin:philly-mix \
		--timesteps 4000 --imitation-episodes 48 --eval-every 1000 --eval-episodes 8 \
		--jobs-min 300 --jobs-max 1000 --eval-jobs 600 --seed 0 --out runs/agent
	$(BIN)/autoflow bench --trace builtin:philly-mix --cluster builtin:philly-64 \
		--policies fifo,sjf,las,las-fcfs,gittins,gittins-siblings,easy-backfill,sjf-oracle,rl,rl:runs/agent/best_model.json \
		--seeds 1 --out runs/default

test: $(STAMP)
	$(BIN)/python -m pytest

bench-speed: $(STAMP)
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) runs
