#!/usr/bin/env bash
# tools/setup.sh - install what firn needs to build, test and run, if missing.
# Debian 12 packages; the AWS CLI and boto3 from Debian when pip has not
# already provided them. Idempotent and quiet when everything is there.
set -euo pipefail

PKGS=(
	build-essential pkg-config meson ninja-build
	libssl-dev libisal-dev liburing-dev libcmocka-dev
	libjansson-dev libmicrohttpd-dev dpdk-dev libdpdk-dev
	clang libclang-rt-14-dev
	fio iproute2 iputils-ping nftables e2fsprogs python3 util-linux
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
command -v aws >/dev/null 2>&1 || missing+=(awscli)
python3 -c 'import boto3' >/dev/null 2>&1 || missing+=(python3-boto3)

if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q
	$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
