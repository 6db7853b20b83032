# Papers 000, 001 and 002 on the bundled digits data, with nnxform's own commands (issue 11).
#
#   make -f examples/papers.mk            # all three pipelines, from the repository root, into build/papers/
#   make -f examples/papers.mk paper000   # quantise to 2 bits per channel, then repair (Algorithm 1) on ten images
#   make -f examples/papers.mk paper001   # sparse training, neuron / weight pruning, fine-tuning, queries
#   make -f examples/papers.mk paper002   # l1 training and exact compression on the whole domain [0,1]^64
#   make -f examples/papers.mk QUERIES="0 1" -j2     # fewer queries (each may take its TIMEOUT, 60 s)
#   make -f examples/papers.mk paper001-batch         # paper 001's question on VNN-COMP's mnist_fc rows (nnxform batch)
#
# Time on 2 cores (-j2, other jobs beside it): paper 001 about 6 minutes (6 min 20 s measured): its networks and
# evaluations about half a minute, its 120 queries (6 networks x 20 images) the rest: most are decided in a second
# or two, a few take up to their TIMEOUT (60 s). Results of the same pipeline: bench/RESULTS.md, "Papers 001 and 002 on digits (issue 11)";
# bench/papers.py runs it in Python, with the same verify, and can decide the queries by other means beside it.
#
# Paper 001 (Guidotti et al.): init 64-256-64-10 with BatchNormalization; train without a penalty (baseline) and
# with L1 on the BN gamma (sparse); prune the sparse network by |gamma| (neuron, 50 % and 75 %) and the baseline by
# |w| (weight, 50 % and 90 %); fine-tune (--keep-zeros after weight pruning, so pruned weights stay 0); fold BN;
# evaluate accuracy and FGSM robustness; for every network and test image in QUERIES, write the L-infinity
# robustness query as VNN-LIB (and all of them in an instances.csv for external verifiers: Marabou, nnenum,
# alpha-beta-CROWN), and decide it with nnxform verify (TIMEOUT s): unsat = robust, sat = not robust (a
# counterexample replayed in onnxruntime), timeout or unknown; then the answers per network side by side, before
# pruning (baseline, sparse) and after (np50, np75, wp50, wp90): $(OUT)/p001/verify.md (and verify.csv per query).
# Paper 002 (Serra et al.): init 64-100-100-10; train with each l1 in L1S; compress on [0,1]^64; evaluate both.
# Paper 000: init and train 64-256-64-10; quantize to 2 bits per output channel; repair it toward the original on
# L-infinity boxes (EPS0) around the first ten test images, retraining on the training data too (pointwise targets,
# alpha 2); the report (repaired.json) has the sound discrepancy and the accuracy per round, repaired.png paper
# 000's Fig. 2 (needs the plot extra). The ten-image file is the test CSV's first ten rows (head).
#
# Every step is an nnxform command, except two: no command turns a data row into an input box, so the box of a
# query is written from the CSV row by awk (see "box" below), and the per-network table of verify's answers, one
# make target per query, is tabulated by awk too (see "verify.csv" below). Reports (*.json) sit next to every file.

NNX       ?= .venv/bin/nnxform
OUT       ?= build/papers
TRAIN     ?= models/data/digits_train.csv
TEST      ?= models/data/digits_test.csv
SCALE     ?= 16
SEED      ?= 0
# paper 001
EPOCHS    ?= 40
FT_EPOCHS ?= 20
BN_L1     ?= 1e-2
EPS       ?= 0.05
TIMEOUT   ?= 60
# test rows (0-based) of the robustness queries
QUERIES   ?= 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19
# paper 002
EPOCHS2   ?= 100
L1S       ?= 0 1e-4 3e-4 1e-3 2e-3

# paper 000
EPS0      ?= 0.02
ALPHA     ?= 2

P0     := $(OUT)/p000
P1     := $(OUT)/p001
P2     := $(OUT)/p002
NETS   := baseline sparse np50 np75 wp50 wp90
TRAINO := --data $(TRAIN) --scale $(SCALE) --seed $(SEED)

.PHONY: all paper000 paper001 paper002 queries clean
.SECONDARY:
.DELETE_ON_ERROR:

all: paper000 paper001 paper002

# --- paper 000 ----------------------------------------------------------------------------------------------------

paper000: $(P0)/repaired.onnx

$(P0)/init.onnx:
	@mkdir -p $(@D)
	$(NNX) init --layers 64,256,64,10 --seed $(SEED) -o $@

$(P0)/original.onnx: $(P0)/init.onnx
	$(NNX) train $< $(TRAINO) --epochs $(EPOCHS) -o $@ --json $(@:.onnx=.json)

$(P0)/compressed.onnx: $(P0)/original.onnx
	$(NNX) quantize $< --bits 2 --per-channel -o $@ --json $(@:.onnx=.json)

$(P0)/ten.csv: $(TEST)
	@mkdir -p $(@D)
	head -n 10 $< > $@

$(P0)/repaired.onnx: $(P0)/original.onnx $(P0)/compressed.onnx $(P0)/ten.csv
	$(NNX) repair $(P0)/original.onnx $(P0)/compressed.onnx -o $@ --data $(P0)/ten.csv --eps $(EPS0) \
	  --clip-lower 0 --clip-upper 1 --scale $(SCALE) --train-data $(TRAIN) --test-data $(TEST) --alpha $(ALPHA) \
	  --rounds 10 --epochs 3 --seed $(SEED) --json $(@:.onnx=.json) --plot $(@:.onnx=.png)

# --- paper 001 ----------------------------------------------------------------------------------------------------

paper001: $(foreach n,$(NETS),$(P1)/$(n).eval.json) queries

$(P1)/init.onnx:
	@mkdir -p $(@D)
	$(NNX) init --layers 64,256,64,10 --batchnorm --seed $(SEED) -o $@

$(P1)/baseline_bn.onnx: $(P1)/init.onnx
	$(NNX) train $< $(TRAINO) --epochs $(EPOCHS) -o $@ --json $(@:.onnx=.json)

$(P1)/sparse_bn.onnx: $(P1)/init.onnx
	$(NNX) train $< $(TRAINO) --epochs $(EPOCHS) --l1-bn-gamma $(BN_L1) -o $@ --json $(@:.onnx=.json)

# neuron pruning by |gamma| of the sparse network; weight pruning by |w| of the baseline (BN folded by prune)
$(P1)/np%_pruned.onnx: $(P1)/sparse_bn.onnx
	$(NNX) prune $< -m neuron -r 0.$* -o $@ --data $(TEST) --scale $(SCALE) --fgsm-eps $(EPS) --json $(@:.onnx=.json)

$(P1)/wp%_pruned.onnx: $(P1)/baseline_bn.onnx
	$(NNX) prune $< -m weight -r 0.$* -o $@ --data $(TEST) --scale $(SCALE) --fgsm-eps $(EPS) --json $(@:.onnx=.json)

# fine-tuning: pruned neurons are gone; pruned weights are exact zeros that --keep-zeros keeps at zero
$(P1)/np%_bn.onnx: $(P1)/np%_pruned.onnx
	$(NNX) train $< $(TRAINO) --epochs $(FT_EPOCHS) -o $@ --json $(@:.onnx=.json)

$(P1)/wp%_bn.onnx: $(P1)/wp%_pruned.onnx
	$(NNX) train $< $(TRAINO) --epochs $(FT_EPOCHS) --keep-zeros -o $@ --json $(@:.onnx=.json)

# BatchNormalization folded into the Gemm layers (a no-op, checked, on the pruned chains)
$(P1)/%.onnx: $(P1)/%_bn.onnx
	$(NNX) fold-bn $< -o $@

$(P1)/%.eval.json: $(P1)/%.onnx
	$(NNX) evaluate $< --data $(TEST) --scale $(SCALE) --eps $(EPS) --json $@

# box of query i: row i+1 of the test CSV, pixels / SCALE, +- EPS, clipped to [0, 1], as VNN-LIB input bounds
$(P1)/queries/box_%.vnnlib: $(TEST)
	@mkdir -p $(@D)
	awk -F, -v row=$$(($*+1)) -v s=$(SCALE) -v e=$(EPS) 'NR==row { \
	  for (k = 2; k <= NF; k++) printf "(declare-const X_%d Real)\n", k-2; \
	  for (k = 0; k < 10; k++) printf "(declare-const Y_%d Real)\n", k; \
	  for (k = 2; k <= NF; k++) { lo = $$k/s - e; hi = $$k/s + e; if (lo < 0) lo = 0; if (hi > 1) hi = 1; \
	    printf "(assert (>= X_%d %.17g))\n(assert (<= X_%d %.17g))\n", k-2, lo, k-2, hi } }' $< > $@

label = $(shell awk -F, 'NR==$(1)+1 {print $$1}' $(TEST))

# one query per network and image: the VNN-LIB robustness property (unsat = robust), decided by nnxform verify
# within TIMEOUT s: the VNN-COMP result file (.result: unsat, sat and the counterexample onnxruntime confirmed,
# timeout or unknown) and verify's report (.verify.json: the answer and its seconds)
define query
$(P1)/queries/$(1)_$(2).vnnlib: $(P1)/$(1).onnx $(P1)/queries/box_$(2).vnnlib
	$(NNX) vnnlib $$< --vnnlib $(P1)/queries/box_$(2).vnnlib --property robustness --label $$(call label,$(2)) \
	  -o $$@

$(P1)/queries/$(1)_$(2).result: $(P1)/$(1).onnx $(P1)/queries/$(1)_$(2).vnnlib
	$$(call verify,$$<,$(P1)/queries/$(1)_$(2).vnnlib,$$@)

VNNLIB_FILES += $(P1)/queries/$(1)_$(2).vnnlib
RESULT_FILES += $(P1)/queries/$(1)_$(2).result
endef
$(foreach n,$(NETS),$(foreach i,$(QUERIES),$(eval $(call query,$(n),$(i)))))

# verify's exit status is its answer: 0 unsat, 1 sat, 3 timeout or unknown; all three are answers, so the pipeline
# goes on. An error is not: 2 (bad input), or an internal error (also 3, but verify then writes nothing), so the
# step succeeds only when the result file verify wrote names the answer its exit status gives.
verify = rm -f $(3) $(3:.result=.verify.json); status=0; \
  $(NNX) verify $(1) $(2) --timeout $(TIMEOUT) --result $(3) --json $(3:.result=.verify.json) || status=$$?; \
  case "$$status:$$(head -n 1 $(3) 2>/dev/null)" in 0:unsat|1:sat|3:timeout|3:unknown) ;; \
    *) echo "papers.mk: nnxform verify failed on $(2) (exit status $$status)" >&2; exit 1 ;; esac

queries: $(P1)/verify.md $(P1)/queries/instances.csv

# the queries as VNN-COMP's instances.csv ('onnx,vnnlib,timeout', paths relative to it), for external verifiers
# (Marabou, nnenum, alpha-beta-CROWN) and the vnncomp/ scripts: written at once when every query is (nnxform vnnlib
# --instances adds one line to a file, but queries written at the same time under -j would lose lines)
$(P1)/queries/instances.csv: $(VNNLIB_FILES)
	for n in $(NETS); do for i in $(QUERIES); do echo "../$$n.onnx,$${n}_$$i.vnnlib,$(TIMEOUT)"; done; done > $@

# the answers side by side, before (baseline, sparse) and after pruning (np50, np75, wp50, wp90). verify.csv: one
# line per query (network, test row, answer, seconds of verify's search as its report gives them: loading the
# network and starting Python, about a second, not counted); verify.md: per network, the queries, unsat (robust),
# sat (not robust: a counterexample replayed in onnxruntime), timeout or unknown, median and total seconds, and the
# test rows not proved robust. Both written by awk from verify's reports, one per query (each query is its own
# make target; `nnxform batch QUERIES.csv verify` tabulates a whole instances.csv at once).
$(P1)/verify.csv: $(RESULT_FILES)
	@echo "awk: verify's reports -> $@"
	@{ echo network,row,answer,seconds; \
	   awk 'FNR == 1 { n = split(FILENAME, part, "/"); name = part[n]; sub(/\.verify\.json$$/, "", name); \
	         k = match(name, /_[0-9]+$$/); net = substr(name, 1, k - 1); row = substr(name, k + 1); answer = "" } \
	       /^  "answer": / { answer = $$2; gsub(/[",]/, "", answer) } \
	       /^  "seconds": / && answer != "" { seconds = $$2; sub(/,$$/, "", seconds); lines++; \
	                                          printf "%s,%s,%s,%.3f\n", net, row, answer, seconds } \
	       END { if (lines != ARGC - 1) { print "papers.mk: " ARGC - 1 - lines " of verify'"'"'s reports unread" \
	                                            > "/dev/stderr"; exit 1 } }' \
	     $(RESULT_FILES:.result=.verify.json); } > $@

$(P1)/verify.md: $(P1)/verify.csv
	@echo "awk: $< -> $@"
	@awk -F, -v nets="$(NETS)" 'NR > 1 { q[$$1]++; c[$$1, $$3]++; s[$$1, q[$$1]] = $$4; \
	       total[$$1] += $$4; if ($$3 != "unsat") open[$$1] = open[$$1] " " $$2 (($$3 == "sat") ? "" : "?") } \
	     END { print "| network | queries | solved | unsat (robust) | sat (not robust) | timeout / unknown " \
	                 "| median s | total s | rows not proved robust (? unsolved) |"; \
	           print "|---|---|---|---|---|---|---|---|---|"; \
	           m = split(nets, net, " "); \
	           for (j = 1; j <= m; j++) { x = net[j]; k = q[x]; if (!k) continue; \
	             for (a = 2; a <= k; a++) for (b = a; b > 1 && s[x, b - 1] + 0 > s[x, b] + 0; b--) \
	               { t = s[x, b]; s[x, b] = s[x, b - 1]; s[x, b - 1] = t } \
	             med = (k % 2) ? s[x, (k + 1) / 2] : (s[x, k / 2] + s[x, k / 2 + 1]) / 2; \
	             printf "| %s | %d | %d | %d | %d | %d / %d | %.2f | %.1f |%s |\n", x, k, \
	               c[x, "unsat"] + c[x, "sat"], c[x, "unsat"], c[x, "sat"], c[x, "timeout"], c[x, "unknown"], \
	               med, total[x], open[x] } }' $< > $@
	@echo "paper 001: nnxform verify, $(TIMEOUT) s per query (L-infinity eps $(EPS)), $@:"; cat $@

# --- paper 002 ----------------------------------------------------------------------------------------------------

paper002: $(foreach l,$(L1S),$(P2)/l1_$(l).eval.json $(P2)/l1_$(l).compressed.eval.json)

$(P2)/init.onnx:
	@mkdir -p $(@D)
	$(NNX) init --layers 64,100,100,10 --seed $(SEED) -o $@

$(P2)/l1_%.onnx: $(P2)/init.onnx
	$(NNX) train $< $(TRAINO) --epochs $(EPOCHS2) --l1 $* -o $@ --json $(@:.onnx=.json)

# exact compression on the whole input domain [0,1]^64, checked in onnxruntime before writing
$(P2)/l1_%.compressed.onnx: $(P2)/l1_%.onnx
	$(NNX) compress $< --lower 0 --upper 1 --seed $(SEED) -o $@ --json $(@:.onnx=.json)

$(P2)/%.eval.json: $(P2)/%.onnx
	$(NNX) evaluate $< --data $(TEST) --scale $(SCALE) --eps $(EPS) --json $@

# --- paper 001 at benchmark scale: the VNN-COMP 2022 mnist_fc rows, original and pruned, with nnxform batch --------
# make -f examples/papers.mk paper001-batch [MNIST_FC=path/to/vnncomp2022/mnist_fc] [BATCH_ROWS_TIMEOUT=30]
# Prune every network of the benchmark's instances.csv (30 % of its neurons, the drift bound on the row's box), then
# bound every row's outputs with the exact MILP on the original and on the pruned instance sets; one table and one
# cactus plot of both (batch-compare). --resume: an interrupted run picks up where it stopped.

MNIST_FC           ?= ../shared/testdata/vnncomp2022/mnist_fc
BATCH_ROWS_TIMEOUT ?= 30
PB                 := $(OUT)/p001-batch

.PHONY: paper001-batch
paper001-batch:
	$(NNX) batch $(MNIST_FC)/instances.csv prune --method neuron --ratio 0.3 --out $(PB)/pruned --resume
	$(NNX) batch $(MNIST_FC)/instances.csv bounds --method milp --time-limit $(BATCH_ROWS_TIMEOUT) --out $(PB)/original-milp --resume
	$(NNX) batch $(PB)/pruned/instances.csv bounds --method milp --time-limit $(BATCH_ROWS_TIMEOUT) --out $(PB)/pruned-milp --resume
	$(NNX) batch-compare $(PB)/original-milp $(PB)/pruned-milp --plot $(PB)/cactus.png

clean:
	rm -rf $(OUT)
