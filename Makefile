# apitoken-operator. `make help` lists the targets.

# Tool and control-plane versions, pinned in one place.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
# The control plane is built from Go modules by hack/controlplane (see its go.mod); the
# directory name is derived from the versions pinned there, so a version change rebuilds.
CONTROLPLANE_KEY := k8s-$(shell cd hack/controlplane && go list -m -f '{{.Version}}' k8s.io/kubernetes)-etcd-$(shell cd hack/controlplane && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
# kwok (the simulated Node of `make dev` and the workload e2e tests) is built by hack/kwok, a
# module of its own, into a sibling directory keyed by the version pinned in its go.mod.
KWOK_VERSION := $(shell cd hack/kwok && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
CONTROLPLANE_DIR ?= $(LOCALBIN)/controlplane/$(CONTROLPLANE_KEY)
# kwok and its stages.yaml; internal/devenv reads KWOK_DIR. The hermetic build is made also
# when KUBEBUILDER_ASSETS is the user's (kwok talks to any API server; it is not an asset);
# a KWOK_DIR the user set is used as it is.
KWOK_BUILD_DIR := $(LOCALBIN)/kwok/$(KWOK_VERSION)
KWOK_DIR ?= $(KWOK_BUILD_DIR)
export KWOK_DIR
# Respect a KUBEBUILDER_ASSETS the user already set; otherwise use the hermetic build.
KUBEBUILDER_ASSETS ?= $(CONTROLPLANE_DIR)
export KUBEBUILDER_ASSETS

GO_TEST_FLAGS ?= -count=1
TEST_TIMEOUT ?= 25m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: vet ## Check formatting (gofmt) and vet; fails on any finding.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: verify
verify: generate manifests fmt ## Regenerate everything and fail if the tree changed.
	@git diff --exit-code -- . ':(exclude)go.sum' || { echo "generated files are out of date: run 'make generate manifests fmt' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api config)" || { git status --porcelain -- api config; echo "untracked generated files: commit them" >&2; exit 1; }

.PHONY: test
test: controlplane zabbix vet ## Run the whole test suite against the hermetic control plane and a real Zabbix (installed as root by `make zabbix`).
	@echo "KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS)"
	go test $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory test-image test-monitoring

##@ Build

.PHONY: build
build: ## Build the manager and the reference backend into bin/.
	go build -o $(LOCALBIN)/manager ./cmd/manager
	go build -o $(LOCALBIN)/status-backend ./cmd/status-backend

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into bin/.
$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.controller-gen-tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/.controller-gen-tmp/controller-gen $@ && rm -rf $(LOCALBIN)/.controller-gen-tmp

.PHONY: controlplane
controlplane: ## Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from Go modules into bin/ (cached by version).
	@if [ "$(KUBEBUILDER_ASSETS)" = "$(CONTROLPLANE_DIR)" ]; then hack/controlplane/build.sh "$(CONTROLPLANE_DIR)"; else echo "using KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) (workloads need kube-scheduler there too)"; fi
	@if [ "$(KWOK_DIR)" = "$(KWOK_BUILD_DIR)" ]; then hack/kwok/build.sh "$(KWOK_DIR)"; else echo "using KWOK_DIR=$(KWOK_DIR)"; fi

.PHONY: zabbix
zabbix: ## Install the Debian packages of a real Zabbix 6.0 API server (as root) and cache its SQL in bin/zabbix; see hack/zabbix/README.md.
	hack/zabbix/install.sh >/dev/null

##@ Deployment

# The manager image the installation refers to.
IMG ?= ghcr.io/statusops/apitoken-operator:v0.1.0
# The image name config/manager leaves in the Deployment, which IMG replaces.
IMG_NAME_IN_CONFIG := ghcr.io/statusops/apitoken-operator
CONTAINER_TOOL ?= docker
# Helm and kustomize are built from Go modules by hack/tools; their versions are pinned in
# hack/tools/go.mod and nowhere else.
HELM_VERSION := $(shell awk '$$1 == "helm.sh/helm/v3" { print $$2 }' hack/tools/go.mod)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
KUSTOMIZE_BUILD ?= go run -C hack/tools ./kustomize-build
HELM_RELEASE ?= apitoken-operator
HELM_NAMESPACE ?= apitoken-system
HELM_VALUES ?=
CHART_DIR := dist/chart
UNDEPLOY_TIMEOUT ?= 5m

.PHONY: build-installer
build-installer: manifests ## Write dist/install.yaml from config/default (IMG sets the image) and sync the chart's CRDs and RBAC.
	@mkdir -p dist
	$(KUSTOMIZE_BUILD) -image $(IMG_NAME_IN_CONFIG)=$(IMG) $(CURDIR)/config/default > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml
	rm -f $(CHART_DIR)/crds/*.yaml && cp config/crd/bases/*.yaml $(CHART_DIR)/crds/
	cp config/rbac/role.yaml $(CHART_DIR)/files/manager-role.yaml
	cp config/prometheus/prometheusrule.yaml config/prometheus/grafana-dashboard.json $(CHART_DIR)/files/

.PHONY: helm
helm: $(HELM) ## Build Helm from the helm.sh/helm/v3 Go module into bin/.
$(HELM): hack/tools/go.mod
	hack/tools/build-helm.sh $@

.PHONY: helm-lint
helm-lint: helm ## Lint the Helm chart.
	$(HELM) lint --strict $(CHART_DIR)

.PHONY: helm-template
helm-template: helm ## Render the Helm chart to stdout (HELM_VALUES=file.yaml to add values).
	$(HELM) template $(HELM_RELEASE) $(CHART_DIR) --namespace $(HELM_NAMESPACE) --include-crds $(if $(HELM_VALUES),--values $(HELM_VALUES))

.PHONY: helm-package
helm-package: helm ## Package the chart into dist/ (apitoken-operator-<version>.tgz).
	$(HELM) package $(CHART_DIR) --destination dist

# `make image`: the manager image as a tarball, built from Go by hack/image (no container
# engine). The tag is IMG's, the version label IMG's tag, the revision the commit, and every
# timestamp the commit time, so the same commit gives the same digest.
IMAGE_TAR ?= $(LOCALBIN)/apitoken-operator-image.tar
IMAGE_ARCH ?= amd64
IMAGE_SOURCE ?= https://github.com/statusops/apitoken-operator
IMAGE_VERSION ?= $(lastword $(subst :, ,$(IMG)))
IMAGE_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: image
image: ## Build the manager image IMG into bin/apitoken-operator-image.tar without a container engine (docker load / kind load image-archive / crane push).
	@mkdir -p $(LOCALBIN)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -buildvcs=false -ldflags="-s -w -buildid=" -o $(LOCALBIN)/manager-linux-$(IMAGE_ARCH) ./cmd/manager
	go run -C hack/image . --binary $(LOCALBIN)/manager-linux-$(IMAGE_ARCH) --arch $(IMAGE_ARCH) --out $(IMAGE_TAR) \
		--tag $(IMG) --source $(IMAGE_SOURCE) --version $(IMAGE_VERSION) --revision $(IMAGE_REVISION) --source-date-epoch $(SOURCE_DATE_EPOCH)

.PHONY: test-image
test-image: image controlplane ## Test the image tarball: config, filesystem, digest stability, and its /manager against the control plane.
	IMAGE_TAR=$(IMAGE_TAR) go test -C hack/image $(GO_TEST_FLAGS) -timeout 10m ./...

.PHONY: test-monitoring
test-monitoring: controlplane ## Test config/prometheus with Prometheus' own packages (separate module hack/monitoring) and against the manager's scrape.
	go test -C hack/monitoring $(GO_TEST_FLAGS) -timeout 10m ./...

.PHONY: docker-build
docker-build: ## Build the manager image IMG (needs a container engine; there is none on the development machines).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager image IMG.
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: deploy
deploy: ## Install dist/install.yaml into the cluster of the current kubeconfig context.
	kubectl apply --server-side -f dist/install.yaml

.PHONY: undeploy
undeploy: ## Delete all APITokens (their deletionPolicy applies), then everything dist/install.yaml installed.
	-kubectl delete apitokens.tokens.statusops.dev --all --all-namespaces --wait --timeout=$(UNDEPLOY_TIMEOUT)
	kubectl delete --ignore-not-found -f dist/install.yaml

##@ Quickstart and end-to-end

# State of `make dev` (etcd data, certificates, kubeconfig, backend database, logs); a
# second `make dev` reuses it. Delete the directory to start from scratch.
DEV_DIR ?= $(CURDIR)/.dev
# Extra flags for cmd/dev, e.g. DEV_FLAGS="--apiserver-port=6443 --manager-args=--log-level=debug".
DEV_FLAGS ?=
# The backend of `make dev`: native (the reference backend) or zabbix (a real Zabbix 6.0 API
# server from hack/zabbix, state in $(DEV_DIR)/zabbix; `sudo make zabbix` installs it once).
BACKEND ?= native
E2E_TIMEOUT ?= 10m

.PHONY: dev
dev: controlplane build ## Run everything locally (control plane, backend, manager, samples) with state in .dev/; Ctrl-C stops it. BACKEND=zabbix: a real Zabbix.
	go build -o $(LOCALBIN)/dev ./cmd/dev
	$(LOCALBIN)/dev --dir "$(DEV_DIR)" --assets "$(KUBEBUILDER_ASSETS)" --repo-root "$(CURDIR)" --manager-binary "$(LOCALBIN)/manager" --backend-binary "$(LOCALBIN)/status-backend" --backend "$(BACKEND)" $(DEV_FLAGS)

.PHONY: quickstart-output
quickstart-output: ## Regenerate docs/quickstart-output.txt from a real cold `make dev` (its own state directory).
	hack/quickstart/capture.sh

.PHONY: run
run: ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd/manager

.PHONY: test-e2e
test-e2e: controlplane ## Run the end-to-end test: the built manager and backend as processes against a local control plane.
	go test $(GO_TEST_FLAGS) -timeout $(E2E_TIMEOUT) -v ./test/e2e/...

##@ Reliability

# The full run: 200 tokens, 24 kill points, 60 s outages (`make test` runs the short one).
RELIABILITY_TIMEOUT ?= 60m
RELIABILITY_FIGURES ?= $(LOCALBIN)/reliability-figures.jsonl

.PHONY: test-reliability
test-reliability: controlplane ## Run the full reliability scenarios (kills, failover, outages, 429 storms, hostile input) with the invariant oracle.
	@mkdir -p $(LOCALBIN) && rm -f $(RELIABILITY_FIGURES)
	RELIABILITY_FULL=1 RELIABILITY_FIGURES=$(RELIABILITY_FIGURES) go test -count=1 -timeout $(RELIABILITY_TIMEOUT) -v ./test/reliability/
	@echo "figures: $(RELIABILITY_FIGURES)"

##@ Benchmarks

# N APITokens; BACKEND_LATENCY is added to every backend request (a Go duration). CHECK=1
# fails the target when a row of bench/results-n*.json misses a target of docs/performance.md.
# BACKEND=zabbix measures against a real Zabbix (no report: the targets are the reference
# backend's).
N ?= 1000
BACKEND_LATENCY ?= 0ms
BENCH_FLAGS ?=
CHECK ?=

.PHONY: bench
bench: controlplane $(if $(filter zabbix,$(BACKEND)),zabbix) ## Measure the operator against the API server's floor (N=1000 BACKEND_LATENCY=0ms CHECK=1); writes bench/results-n$(N).json, then the figures in docs/performance.md. BACKEND=zabbix: against a real Zabbix, bench/results-n$(N)-zabbix.json only.
ifeq ($(BACKEND),zabbix)
	go run ./bench -n $(N) -backend zabbix $(BENCH_FLAGS)
else
	go run ./bench -n $(N) -backend-latency $(BACKEND_LATENCY) $(BENCH_FLAGS)
	go run ./bench -report $(if $(CHECK),-check)
endif

.PHONY: bench-report
bench-report: ## Regenerate docs/performance.md's figures and bench/plot.svg from bench/results-n*.json (CHECK=1 fails on a missed target).
	go run ./bench -report $(if $(CHECK),-check)
