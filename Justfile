# Recipes for those who have `just`; each is a plain command from the README.

cache := env_var_or_default("HUSK_TEST_CACHE", "/var/tmp/husk-cache")

# Build the husk binary into ./husk.
build:
    go build -o husk ./cmd/husk

# The main job end to end on a real Debian image (see README, Quick start).
demo:
    bash testdata/demo.sh

# The whole test suite, installing what it needs when run as root.
test *ARGS:
    bash testdata/test.sh {{ARGS}}

# Only the fast unit tests of one package, e.g. `just unit ./ext3`.
unit PKG:
    go test -count=1 {{PKG}}

# Run one package's fuzz targets for a while, e.g. `just fuzz ./squash 2m`.
fuzz PKG TIME="1m":
    for t in $(go test -list '^Fuzz' {{PKG}} | grep '^Fuzz'); do \
        go test -run='^$' -fuzz="^$t\$" -fuzztime={{TIME}} {{PKG}}; done

# Go benchmarks of the hot paths.
gobench:
    go test -run='^$' -bench=. -benchmem ./squash ./ext3 ./fusefs

lint:
    gofmt -l . && go vet ./...
