# apitoken-operator. `make help` lists the targets.

# Tool and control-plane versions, pinned in one place.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
# The control plane is built from Go modules by hack/controlplane (see its go.mod); the
# directory name is derived from the versions pinned there, so a version change rebuilds.
CONTROLPLANE_KEY := $(shell cd hack/controlplane && go list -m -f '{{.Path}}@{{.Version}}' k8s.io/kubernetes go.etcd.io/etcd/server/v3 2>/dev/null | sed -e 's|.*/||' -e 's|@|-|' | tr '\n' '_' | sed 's/_$$//')

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
CONTROLPLANE_DIR ?= $(LOCALBIN)/controlplane/$(CONTROLPLANE_KEY)
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

.PHONY: verify
verify: generate manifests fmt ## Regenerate everything and fail if the tree changed.
	@git diff --exit-code -- . ':(exclude)go.sum' || { echo "generated files are out of date: run 'make generate manifests fmt' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api config)" || { git status --porcelain -- api config; echo "untracked generated files: commit them" >&2; exit 1; }

.PHONY: test
test: controlplane vet ## Run the whole test suite against the hermetic control plane.
	@echo "KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS)"
	go test $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...

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
controlplane: ## Build etcd, kube-apiserver and kube-controller-manager from Go modules into bin/ (cached by version).
	@if [ "$(KUBEBUILDER_ASSETS)" = "$(CONTROLPLANE_DIR)" ]; then hack/controlplane/build.sh "$(CONTROLPLANE_DIR)"; else echo "using KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS)"; fi
