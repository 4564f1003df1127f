"""The command line's parser: one small adder per command, in the order ``--help`` lists them."""

from __future__ import annotations

import argparse

from compression.cli.common import MAX_PREDICT_FILE_BYTES
from compression.core import registry as techniques
from compression.core.errors import LabError

EPILOG = """examples:
  python -m compression sources
  python -m compression build recipes/quick.yaml
  python -m compression list
  python -m compression predict teacher "a gripping, beautifully acted film"
  python -m compression predict teacher --pair "He left at noon." "He departed at 12."   # a pair variant
  python -m compression bench teacher minilm-l6 minilm-l6-int8
  python -m compression evaluate teacher minilm-l6 --data held-out.csv --split all
  python -m compression advise
  python -m compression publish --to published/quick        # or --to quick.zip, or --to hub:USER/NAME
  python -m compression predict teacher "a dull film" --published published/quick
store folder: --store DIR, else $COMPRESSION_LAB_STORE, else ./runs
published run (read-only, instead of a store): --published DIR|FILE.zip|hub:USER/NAME"""


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", help="run store folder (default: $COMPRESSION_LAB_STORE or ./runs)")


def _source_args(p: argparse.ArgumentParser) -> None:
    """Where variants come from: a run store, or a published run (read-only, never written to)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--store", metavar="DIR", help="run store folder (default: $COMPRESSION_LAB_STORE or ./runs)")
    group.add_argument("--published", metavar="REF", help="read variants from a published run instead of a store: "
                                                          "its folder, a .zip of it, or hub:USER/NAME (read-only)")


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser. ``intermixed=True``: its positionals and options come in any order, as users type
    them (``predict teacher --published RUN "a text"`` as well as ``predict teacher "a text" --published RUN``);
    plain argparse stops filling a list positional (``TEXT...``) at the first option and refuses what follows."""

    def __init__(self, *args, intermixed: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self._parsing = False

    def parse_known_args(self, args=None, namespace=None):
        # The subcommand action calls this; parse_known_intermixed_args calls it again (Python 3.11-3.12) for
        # its two passes, which must be plain ones.
        if not self.intermixed or self._parsing:
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compression", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="BERT Compression Lab: distill, prune and quantize BERT-family text classifiers, "
                    "and measure what each variant costs and keeps.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for add in (_add_sources, _add_build, _add_list, _add_predict, _add_bench, _add_advise, _add_evaluate,
                _add_inspect, _add_export, _add_publish, _add_verify, _add_loadtest):
        add(sub)
    return parser


def _add_sources(sub) -> None:
    p = sub.add_parser("sources", help="list embedded models and data sets and whether each is usable here",
                       description="List the embedded models and data sets (shipped in pip packages, no internet "
                                   "needed) and whether each is installed and usable on this machine.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _techniques_epilog() -> str:
    """Every registered technique (plugins too) with its own recipe keys, from the registry."""
    try:
        sections = [f"{stage} methods ({where}):\n" + techniques.help_text(stage) for stage, where in (
            ("student", "students[].init"), ("prune", "prune[].method"), ("quantize", "quantize[].method"))]
    except LabError as err:
        return f"techniques: {err}"
    return "\n\n".join(sections) + ("\n\nA method's own keys sit beside the step's other keys, e.g.\n"
                                     "  quantize:\n    - {name: q, source: teacher, method: dynamic-int8, "
                                     "activation_bits: 8}")


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="run a recipe and record its variants in the store",
                       description="Run a recipe (YAML): load data and teacher, make the variants, save each as a "
                                   "bundle, reload it in a fresh process, evaluate it on the test split and record "
                                   "it in the run store. One build per store at a time.",
                       epilog=_techniques_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="recipe file, e.g. recipes/quick.yaml")
    _store_arg(p)
    p.add_argument("--data-dir", metavar="DIR", help="folder that relative data paths in the recipe are resolved "
                                                      "against (default: the current folder)")


def _add_advise(sub) -> None:
    p = sub.add_parser("advise", help="which techniques pay on this machine (measured, else from CPU flags)",
                       description="Say which compression techniques pay on this CPU: from measured speed-ups in "
                                   "the store where they exist, from the CPU's instruction sets otherwise.")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write the store's results as a JSON reference file (no weights)",
                       description="Write every finished variant's metrics, benchmark figures and provenance to a "
                                   "JSON file the dashboard can show as a labelled reference result (weights are "
                                   "not included; bundle paths are dropped).")
    _store_arg(p)
    p.add_argument("out", help="output JSON file, e.g. assets/reference/quick.json")
    p.add_argument("--label", required=True, help="how the dashboard labels it, e.g. 'quick recipe, 2-core CPU'")
    p.add_argument("--chart", metavar="PNG", help="also draw the accuracy/latency/size chart as an image (needs "
                                                  "Playwright + Chromium from requirements-dev.txt)")


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="what a variant gets wrong beside the teacher: confusion, disagreements, "
                                       "slices, calibration",
                       description="Compare a variant's predictions on the test split with the teacher's (or "
                                   "--against another variant of the same run): both confusion matrices, the "
                                   "examples one gets right and the other wrong (McNemar's discordant pairs), "
                                   "accuracy by slice (length, label, negation; word overlap for pairs) and "
                                   "calibration. Reads the latest run of the store, or a published run.")
    p.add_argument("variant", help="a variant of the run, e.g. minilm-l6-int8")
    p.add_argument("--against", metavar="VARIANT", help="compare with this variant (default: the run's teacher)")
    p.add_argument("--limit", type=int, metavar="N", help="disagreements listed each way (default: 5 in the "
                                                             "table, all with --json)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _source_args(p)


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="reload a bundle and check it reproduces its probe predictions",
                       description="Load a bundle folder and compare its logits on the probe texts with those "
                                   "recorded when it was saved.")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_loadtest(sub) -> None:
    p = sub.add_parser("loadtest", help="drive a running app with concurrent clients; report latency per level",
                       description="Load-test a running dashboard: for each client count in --levels, that many "
                                   "gradio_client clients each make --predictions Playground calls one after "
                                   "another; prints errors, p50/p95/max latency (queueing included) and requests/s "
                                   "per level. Start the app first (python app.py --store DIR). Bounded: at most "
                                   "64 clients, 1000 calls each, --timeout seconds overall.")
    p.add_argument("url", help="the app's URL, e.g. http://127.0.0.1:7860/")
    p.add_argument("--levels", default="1,2,4,8,16", help="client counts to run in turn (default: 1,2,4,8,16)")
    p.add_argument("--predictions", type=int, default=25, help="calls per client (default: 25)")
    p.add_argument("--timeout", type=float, default=900, help="overall limit in seconds (default: 900)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="list finished variants and their metrics",
                       description="List the finished variants of one run (default: the newest finished run), or "
                                   "the variants of a published run (--published), each checked against its "
                                   "manifest.")
    _source_args(p)
    p.add_argument("--run", default="latest", help="latest (default), a run id, or all (newest of each name)")
    p.add_argument("--json", action="store_true", help="print one JSON object per variant")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (for a README)")
    p.add_argument("--f1", action="store_true", help="with --markdown: add the F1 of the positive class (label 1) "
                                                     "with its 95%% CI, what binary pair tasks such as MRPC report")


PREDICT_EPILOG = """examples:
  python -m compression predict teacher "a gripping film" "a dull film"
  python -m compression predict teacher --file reviews.txt                 # one text per line
pair variants (paraphrase, entailment: bundle.json names two inputs, e.g. sentence1 + sentence2):
  python -m compression predict teacher --pair "He left at noon." "He departed at 12."
  python -m compression predict teacher --pair "A" "B" --pair "C" "D" --json  # JSON: text and text_pair
  python -m compression predict teacher --file pairs.tsv
a pair file holds one pair per row, separated by commas (.csv) or tabs (.tsv; other names: tabs when the first
line has one, else commas); quote a text that holds the separator. The pair is the two columns its header names
(sentence1/sentence2, premise/hypothesis, question1/question2, question/sentence, text/text_pair or the variant's
own input names), else the first two columns of every row (the file then has no header row).
Single texts for a pair variant, or pairs for a single-text variant, are refused with one line of error."""


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="label and confidence for each text (or pair of texts)", intermixed=True,
                       epilog=PREDICT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Classify texts with a variant: its name in the store (or in the published run "
                                   "given by --published), or a bundle folder. A pair variant (sentence-pair task) "
                                   "reads pairs of texts instead: --pair, or a --file with two text columns.")
    p.add_argument("variant", help="variant name (see `list`) or path to a bundle folder")
    p.add_argument("texts", nargs="*", default=[], metavar="TEXT", help="one or more texts (single-text variants)")
    p.add_argument("--pair", nargs=2, action="append", metavar=("FIRST", "SECOND"),
                   help="a pair of texts for a pair variant, e.g. --pair \"He left.\" \"He went away.\"; repeat it "
                        "for more pairs")
    p.add_argument("--file", metavar="PATH", help=f"also classify the texts of this UTF-8 file (at most "
                                                  f"{MAX_PREDICT_FILE_BYTES // 1_000_000} MB): every non-empty line, "
                                                  f"or one pair per CSV/TSV row for a pair variant (see below)")
    _source_args(p)
    p.add_argument("--json", action="store_true", help="print JSON (a pair as text and text_pair)")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", intermixed=True,
                       help="measure latency, throughput, memory and size of bundles, interleaved",
                       description="Benchmark several variants in ONE interleaved run on real test sentences "
                                   "(text pairs for a pair task): batch-1 latency p50/p95, throughput, peak memory, "
                                   "size, parameters, load time, with ratios against the first (put the teacher "
                                   "first) and full provenance. Do not run it while other heavy work runs: it inflates timings.")
    p.add_argument("bundles", nargs="+", metavar="VARIANT", help="variant names (see `list`) or bundle folders")
    _source_args(p)
    p.add_argument("--data", metavar="REF", help="data whose test split supplies the sentences (default: the data "
                                                 "the first bundle was trained on; with --published, the test "
                                                 "sentences packed in the published run)")
    p.add_argument("--samples", type=int, default=64, help="sentences timed at batch 1 per round (default 64)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--threads", type=int, help="threads for torch and ONNX Runtime (default: usable cores)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--record", action="store_true", help="store the figures as the variants' benchmark in the store "
                                                         "(not with --published: a published run is read-only)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", intermixed=True,
                       help="accuracy of variants on any labelled data (e.g. a held-out set)",
                       description="Score variants on a labelled split of any data reference: accuracy with a "
                                   "bootstrap 95 % CI, macro-F1 (two labels: also the F1 of the second, 'F1 pos.') and "
                                   "agreement with the first variant named (name the teacher first). Pair data "
                                   "(e.g. sentence1 + sentence2 columns) is scored as pairs, by pair variants only. "
                                   "Labels are matched to each variant's labels by name, or by id when the data has "
                                   "bare ids 0..K-1. Use it to check generalisation on data the "
                                   "recipe never saw, without touching the recorded test figures.")
    p.add_argument("bundles", nargs="+", metavar="VARIANT", help="variant names (see `list`) or bundle folders")
    _source_args(p)
    p.add_argument("--data", metavar="REF", required=True, help="data reference: a folder of split files, a file, "
                                                                 "or a Hub id")
    p.add_argument("--split", choices=("test", "validation", "train", "all"), default="test",
                   help="split to score (default: test; a single file is split 80/10/10 as in recipes, so use all "
                        "to score every row)")
    p.add_argument("--json", action="store_true", help="print one JSON object per variant")


PUBLISH_EPILOG = """examples:
  python -m compression publish --to published/quick                   # a folder (new or empty)
  python -m compression publish --to quick.zip --run 3                 # one zip file, run 3 of the store
  python -m compression publish --to hub:USER/quick-compressed         # a Hugging Face Hub repo (needs a token)
  python -m compression publish --variants minilm-l6,minilm-l6-int8 --to published/small
then serve it, with no build and nothing written into it:
  python app.py --published published/quick
  COMPRESSION_LAB_PUBLISHED=hub:USER/quick-compressed python app.py"""


def _add_publish(sub) -> None:
    p = sub.add_parser("publish", help="pack a finished run into a read-only folder, zip or Hub repo",
                       epilog=PUBLISH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Pack the finished variants of one run (bundles, results, recipe, example texts, "
                                   "a README report and a model card per bundle) into one self-contained folder "
                                   "with a manifest of SHA-256 hashes. It travels (a Hugging Face Space, a laptop) "
                                   "and is served read-only: every bundle is checked against the manifest first.")
    _store_arg(p)
    p.add_argument("--run", default="latest", help="latest (default: the newest finished run) or a run id")
    p.add_argument("--variants", metavar="A,B,...", help="variants to include (default: every intact one); the "
                                                         "teacher is always included: ratios are against it")
    p.add_argument("--to", required=True, metavar="DIR|FILE.zip|hub:USER/NAME",
                   help="a new or empty folder, a new .zip file, or a Hugging Face Hub repo")
    p.add_argument("--label", help="how the dashboard and README name the run (default: recipe, run id and date)")
    p.add_argument("--no-chart", action="store_true", help="do not draw chart.png (drawing needs Playwright + "
                                                           "Chromium)")
