#!/usr/bin/env bash
# Installs the test-only npm packages (package-lock.json) that the webhook
# package's tests run through Node (interop_node_test.go): the providers'
# official @octokit/webhooks-methods and @shopify/shopify-api. CI runs this
# before `go test` (with CI=true those tests fail instead of skipping when
# Node or the packages are missing). Needs Node >= 20 and npm.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
