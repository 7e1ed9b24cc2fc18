#!/bin/sh
# Runs floe's fuzz targets one after the other, each for a while (default 600 s):
#
#   fuzz/run.sh                     # every target, 10 minutes each
#   fuzz/run.sh pipeline_parse 60   # one target, one minute
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). It uses nightly-only compiler flags; on a
# stable toolchain RUSTC_BOOTSTRAP=1 lets stable accept them. Seeds come from fuzz/seeds/<target>
# (the repository's own pipelines, conf files and checkpoint fixtures); the corpus grows in
# fuzz/corpus/<target> and crashes land in fuzz/artifacts/<target>.
set -eu
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
seconds="${2:-600}"
targets="${1:-pipeline_parse conf_load metadata_decode}"
mkdir -p seeds/pipeline_parse seeds/conf_load seeds/metadata_decode
cp ../pipelines/*.yaml ../tests/golden/validate/*.yaml seeds/pipeline_parse/ 2>/dev/null || true
cp ../conf/flink-conf.yaml ../deploy/systemd/flink-conf.yaml seeds/conf_load/ 2>/dev/null || true
find ../tests/fixtures -name _metadata | while read -r f; do
    name="$(echo "$f" | tr '/.' '__')"
    cp "$f" "seeds/metadata_decode/$name"
    # The framed form the target also tries: a version byte, then the payload alone (the
    # file without its 16-byte header and 4-byte crc32c).
    version=$(od -An -tu1 -j7 -N1 "$f" | tr -d ' ')
    { printf "\\$(printf '%03o' "$version")"; tail -c +17 "$f" | head -c -4; } \
        > "seeds/metadata_decode/payload$name"
done
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "== $t for ${seconds}s"
    # -rss_limit_mb: a decoder that trusts a length field would allocate far beyond it;
    # -timeout: an input that takes more than 10 s is reported as a hang.
    cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        -print_final_stats=1
done
