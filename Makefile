# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NNX    := $(BIN)/nnxform
OUT    := build/demo

.PHONY: demo test bench bench-crown bench-verify verifiers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	@mkdir -p $(OUT)
	@echo "== 1. What is this network? (MATLAB export, IR v3, Sub + MatMul/Add)"
	$(NNX) info models/ACASXU_run2a_1_1_batch_2000.onnx
	@echo; echo "== 2. Canonicalise it on its VNN-LIB box, checked in onnxruntime before writing"
	$(NNX) canon models/ACASXU_run2a_1_1_batch_2000.onnx -o $(OUT)/acasxu.canon.onnx --vnnlib models/vnnlib/acasxu_prop_1.vnnlib
	@echo; echo "== 3. Fold batch norms after ReLUs: forward where exact, explicit before a padded Conv"
	$(NNX) fold-bn models/bn_after_relu_conv.onnx -o $(OUT)/bn_after_relu_conv.nobn.onnx
	@echo; echo "== 4. Independent check of the folded network against the original"
	$(NNX) check models/bn_after_relu_conv.onnx $(OUT)/bn_after_relu_conv.nobn.onnx --samples 2000
	@echo; echo "== 5. PyTorch export with Transpose+Reshape: collapsed into one Flatten"
	$(NNX) canon models/dnnv_mnist_relu_3_50.onnx -o $(OUT)/dnnv.canon.onnx --lower 0 --upper 1
	$(NNX) info $(OUT)/dnnv.canon.onnx
	@echo; echo "== 6. Sound bounds on a VNN-COMP MNIST network and box"
	$(NNX) bounds models/mnist-net_256x2.onnx --vnnlib models/vnnlib/mnist_prop_0_0.03.vnnlib --method symbolic
	@echo; echo "== 7. Prune 30% of its hidden units, with a sound drift bound on the box; accuracy and FGSM robustness"
	$(NNX) prune models/mnist-net_256x2.onnx --method neuron --ratio 0.3 -o $(OUT)/mnist.pruned.onnx --vnnlib models/vnnlib/mnist_prop_0_0.03.vnnlib
	$(NNX) evaluate models/mnist-net_256x2.onnx --against $(OUT)/mnist.pruned.onnx --data models/data/mnist_test_100.csv --scale 255 --eps 0.01 --eps 0.05
	@echo; echo "== 8. Merge original and pruned into one network for external verifiers, with the epsilon-equivalence query"
	$(NNX) merge models/mnist-net_256x2.onnx $(OUT)/mnist.pruned.onnx -o $(OUT)/mnist.diff.onnx --vnnlib models/vnnlib/mnist_prop_0_0.03.vnnlib --write-vnnlib $(OUT)/mnist.diff.vnnlib --equiv-eps 0.01
	@echo; echo "== 9. How far apart can they be on the box? (δ_max below 0.01 means the query above is unsat)"
	$(NNX) discrepancy models/mnist-net_256x2.onnx $(OUT)/mnist.pruned.onnx --vnnlib models/vnnlib/mnist_prop_0_0.03.vnnlib --method symbolic
	@echo; echo "== 10. Exact compression on the box: stable ReLUs found and removed, checked, and certified on the whole box"
	$(NNX) compress models/mnist-net_256x2.onnx -o $(OUT)/mnist.compressed.onnx --vnnlib models/vnnlib/mnist_prop_0_0.03.vnnlib --certify
	$(NNX) check models/mnist-net_256x2.onnx $(OUT)/mnist.compressed.onnx --vnnlib models/vnnlib/mnist_prop_0_0.03.vnnlib --samples 10000
	@echo; echo "== 11. The training half: train on the bundled digits, quantise to 2 bits, repair on boxes around ten test images (paper 000)"
	$(NNX) init --layers 64,256,64,10 --seed 0 -o $(OUT)/digits.init.onnx
	$(NNX) train $(OUT)/digits.init.onnx --data models/data/digits_train.csv --scale 16 --epochs 20 -o $(OUT)/digits.onnx
	$(NNX) quantize $(OUT)/digits.onnx --bits 2 --per-channel -o $(OUT)/digits.q2.onnx
	head -n 10 models/data/digits_test.csv > $(OUT)/digits_ten.csv
	$(NNX) repair $(OUT)/digits.onnx $(OUT)/digits.q2.onnx -o $(OUT)/digits.repaired.onnx --data $(OUT)/digits_ten.csv --eps 0.02 --clip-lower 0 --clip-upper 1 --scale 16 --train-data models/data/digits_train.csv --test-data models/data/digits_test.csv --rounds 5 --epochs 3

# One BLAS thread: on 2 shared cores a second OpenBLAS thread makes the small products 5-10x slower.
test: $(VENV)/.installed-test
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

# Issue 21 side by side, with the verifiers' venvs of `make verifiers`: bounds against auto_LiRPA's CROWN, verify against nnenum.
bench-crown: $(VENV)/.installed
	VERIFIER_ENVS="$(VERIFIER_ENVS)" $(BIN)/python bench/crown.py
bench-verify: $(VENV)/.installed
	VERIFIER_ENVS="$(VERIFIER_ENVS)" $(BIN)/python bench/verify.py

# Which external verifiers read what nnxform writes (issue 14), and what α,β-CROWN and nnenum answer on it (issue 24):
# each installed in its own venv under VERIFIER_ENVS (gigabytes of wheels, so not part of `make test`); the two run
# when NNENUM_SRC / ABCROWN_SRC (and optionally ONNX2PYTORCH_SRC) name source trees (README: how to get them).
# The tables go to build/verifiers/matrix.md; an answer contradicting nnxform fails the target.
VERIFIER_ENVS ?= build/verifiers
verifiers: $(VENV)/.installed
	NNENUM_SRC="$(NNENUM_SRC)" ABCROWN_SRC="$(ABCROWN_SRC)" ONNX2PYTORCH_SRC="$(ONNX2PYTORCH_SRC)" \
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/verifiers.py --envs "$(VERIFIER_ENVS)" --out build/verifiers/matrix.md

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
