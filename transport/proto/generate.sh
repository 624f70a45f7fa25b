#!/usr/bin/env bash
# Regenerates transport/gen/ from transport/proto/ (called by `make proto`).
#
# The generators are pinned: each is installed with `go install pkg@version`
# into the git-ignored .cache/bin (once; reinstalled when the pinned version
# changes), so the generated code only changes when the .proto or a pin does.
# Building buf takes about a minute and a half the first time.
set -euo pipefail

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12      # = google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1   # google.golang.org/grpc/cmd/protoc-gen-go-grpc

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tools="$root/.cache/bin"
GO=${GO:-go}

# ensure NAME PACKAGE VERSION: install PACKAGE@VERSION unless .cache/bin/NAME
# already reports VERSION (every one of these tools prints its version).
ensure() {
	local name=$1 pkg=$2 version=$3 have=""
	if [[ -x "$tools/$name" ]]; then
		have=$("$tools/$name" --version 2>&1 || true)
	fi
	# buf prints "1.75.0", protoc-gen-go "protoc-gen-go v1.36.12",
	# protoc-gen-go-grpc "protoc-gen-go-grpc 1.5.1".
	if [[ " $have " != *" ${version#v} "* && " $have " != *" $version "* ]]; then
		echo "installing $pkg@$version into .cache/bin" >&2
		mkdir -p "$tools"
		rm -f "$tools/$name"
		GOBIN="$tools" "$GO" install "$pkg@$version"
	fi
}

ensure buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
ensure protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
ensure protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

cd "$root/transport/proto"
export PATH="$tools:$PATH"
buf lint
buf generate
