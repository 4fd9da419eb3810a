"""Make a SIMULATED later vintage of each demo class raster, so the Change page has a pair to show.

No public two-date FLAIR pair is available, so this script invents a plausible "3 years later"
for each demo ground truth (and each demo prediction, when the catalog has some). Everything it
writes says "simulated" in its file name, its catalog entry (``simulated = true``, title with
"SIMULATED") and the data README. It is deterministic: same inputs and seed, same bytes.

What changes, on the same grid as the original:

* **development**: a 5 m road, a parking lot (impervious surface) and three buildings are placed on
  the 40 m × 32 m site that holds the most bare soil / brushwood / herbaceous / agricultural /
  plowed land; only those pixels change (artificialisation);
* **clear cut**: the 24 m × 24 m block with the most forest (coniferous, deciduous, mixed) becomes
  clear cut, where it is forest;
* **small park**: the 10 m × 10 m block with the most impervious surface becomes herbaceous
  vegetation, when it is mostly impervious (de-artificialisation), so both ZAN flows show.

For each scene it also writes the change COG of the pair with :func:`flair_viz.change.compute_change`
and registers the pair as a ``role = "change"`` dataset whose ``extra`` names ``before`` and ``after``;
the Change page offers these pairs. Catalog entries go between two marker lines of
``data/demo/catalog.toml`` and replace what a previous run wrote there; nothing else is touched.

Usage: ``.venv/bin/python scripts/make_simulated_vintage.py [--seed 2154] [--catalog data/demo/catalog.toml]``

``--series`` writes instead (in a block of its own, leaving the block above as it is):

* the **Gers series** ``gers``: the real 2016 and 2019 ODEON vintages followed by two SIMULATED later
  vintages, 2022 (simulated from 2019) and 2025 (simulated from 2022), both in FLAIR-1 values, so the
  series also mixes nomenclatures (both map to FLAIR-1); the real entries keep their own lines and get
  ``series = "gers"`` by hand in the catalog;
* a **SIMULATED later image** of patch 000473 (``IMG_000473_SIM2024``): the real image where the
  SIMULATED 2024 ground truth changed class, those pixels repainted with real pixels of the new class
  sampled from the demo images (impervious surface where no demo image has the class), so a model's
  predictions of both image vintages give a "change from predictions" to show.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flair_viz.change import compute_change, source_from_dataset  # noqa: E402
from flair_viz.core import atomic, classes, config, raster  # noqa: E402
from flair_viz.core.catalog import Catalog, Dataset  # noqa: E402

YEARS_LATER = 3
DEFAULT_SEED = 2154
OUT_DIR = "simulated"
BEGIN = "# --- BEGIN simulated vintages (written by scripts/make_simulated_vintage.py; do not edit by hand) ---"
END = "# --- END simulated vintages ---"

V = {c.key: c.value for c in classes.FLAIR1_CLASSES}
BUILDABLE = [V[k] for k in ("bare_soil", "brushwood", "herbaceous", "agricultural", "plowed")]
FOREST = [V[k] for k in ("coniferous", "deciduous", "mixed")]


def best_site(mask: np.ndarray, h: int, w: int, rng: np.random.Generator, tries: int = 400) -> tuple[int, int, float]:
    """Top-left (row, col) of the h×w window with the highest share of ``mask`` among random candidates."""
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    rows = rng.integers(0, mask.shape[0] - h + 1, tries)
    cols = rng.integers(0, mask.shape[1] - w + 1, tries)
    sums = integral[rows + h, cols + w] - integral[rows, cols + w] - integral[rows + h, cols] + integral[rows, cols]
    i = int(np.argmax(sums))
    return int(rows[i]), int(cols[i]), float(sums[i]) / (h * w)


def simulate(codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """A later vintage of a FLAIR-1 class array, and one line per change made."""
    out = codes.copy()
    made: list[str] = []
    px = 5  # pixels per metre at 0.2 m
    buildable = np.isin(codes, BUILDABLE)
    if buildable.mean() > 0.05:
        r, c, share = best_site(buildable, 32 * px, 40 * px, rng)
        plan = np.zeros((32 * px, 40 * px), dtype=np.uint8)
        plan[14 * px:19 * px, :] = V["impervious"]  # 5 m road across the site
        plan[20 * px:30 * px, 2 * px:16 * px] = V["impervious"]  # parking lot
        for br, bc, bh, bw in ((2, 3, 10, 12), (2, 20, 9, 14), (21, 22, 9, 15)):
            jitter = rng.integers(0, 2 * px, 2)
            plan[br * px + jitter[0]:(br + bh) * px + jitter[0], bc * px + jitter[1]:(bc + bw) * px + jitter[1]] = V["building"]
        site = out[r:r + plan.shape[0], c:c + plan.shape[1]]
        change = (plan > 0) & buildable[r:r + plan.shape[0], c:c + plan.shape[1]]
        site[change] = plan[change]
        made.append(f"development at rows {r}-{r + plan.shape[0]}, cols {c}-{c + plan.shape[1]} "
                    f"({int(change.sum())} px; site {share:.0%} buildable)")
    forest = np.isin(codes, FOREST)
    if forest.sum() > 5000:
        r, c, share = best_site(forest, 24 * px, 24 * px, rng)
        block = out[r:r + 24 * px, c:c + 24 * px]
        cut = forest[r:r + 24 * px, c:c + 24 * px]
        block[cut] = V["clear_cut"]
        made.append(f"clear cut at rows {r}-{r + 24 * px}, cols {c}-{c + 24 * px} ({int(cut.sum())} px)")
    sealed = codes == V["impervious"]
    if sealed.sum() > 2500:
        r, c, share = best_site(sealed, 10 * px, 10 * px, rng)
        if share > 0.5:
            block = out[r:r + 10 * px, c:c + 10 * px]
            park = sealed[r:r + 10 * px, c:c + 10 * px]
            block[park] = V["herbaceous"]
            made.append(f"park on former impervious surface at rows {r}-{r + 10 * px}, cols {c}-{c + 10 * px} "
                        f"({int(park.sum())} px)")
    return out, made


def later_vintage(vintage: str | None, domain: str | None) -> tuple[str, int]:
    """Same day, YEARS_LATER years on (year from the vintage, else from the domain name)."""
    if vintage and vintage[:4].isdigit():
        year = int(vintage[:4]) + YEARS_LATER
        return f"{year}{vintage[4:]}", year
    if domain and domain[-4:].isdigit():
        year = int(domain[-4:]) + YEARS_LATER
        return str(year), year
    raise SystemExit(f"cannot tell the year of a dataset with vintage {vintage!r} and domain {domain!r}")


def write_like(src_path: Path, dst: Path, values: np.ndarray) -> None:
    with rasterio.open(src_path) as src:
        profile = src.profile
    with atomic.atomic_path(dst) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(values, 1)


def simulate_dataset(cat: Catalog, ds: Dataset, out_dir: Path, seed: int) -> list[Dataset]:
    """Write the simulated later raster and the change COG of the pair; return their catalog entries."""
    with rasterio.open(ds.path) as src:
        raw = src.read(1)
    codes = classes.to_flair1(raw, ds.nomenclature)
    rng = np.random.default_rng([seed, int(ds.patch) if ds.patch and ds.patch.isdigit() else 0])
    later, made = simulate(codes, rng)
    if ds.nomenclature == "flairhub":
        later = classes.flair1_to_flairhub_lut()[later]
    vintage, year = later_vintage(ds.vintage, ds.domain)
    sim_path = out_dir / f"{ds.id}_simulated_{year}.tif"
    write_like(ds.path, sim_path, later)
    print(f"{sim_path.relative_to(cat.root)}: " + ("; ".join(made) or "no eligible land, unchanged"))
    sim = Dataset(id=f"{ds.id}_SIM{year}", path=sim_path, role=ds.role, vintage=vintage, domain=ds.domain,
                  zone=ds.zone, patch=ds.patch, nomenclature=ds.nomenclature, simulated=True,
                  title=f"SIMULATED {ds.title or ds.id} ({year})",
                  extra={"simulated_from": ds.id, "made_by": "scripts/make_simulated_vintage.py", "seed": str(seed)})
    start = (ds.vintage or str(year - YEARS_LATER))[:4]
    chg_path = out_dir / f"CHANGE_{ds.id}_simulated_{start}_{year}.tif"
    compute_change(source_from_dataset(ds), source_from_dataset(sim), change_cog=chg_path)
    chg = Dataset(id=f"CHANGE_{ds.id}_SIM{year}", path=chg_path, role="change", vintage=vintage, domain=ds.domain,
                  zone=ds.zone, patch=ds.patch, simulated=True,
                  title=f"SIMULATED change {ds.id} {start}→{year}",
                  extra={"before": ds.id, "after": sim.id, "made_by": "scripts/make_simulated_vintage.py"})
    return [sim, chg]


def write_catalog_block(catalog_file: Path, entries: list[Dataset], root: Path) -> None:
    """Replace the marked block of the catalog TOML (or append it), leaving every other line as it is."""
    text = catalog_file.read_text(encoding="utf-8")
    block = BEGIN + "\n" + tomli_w.dumps({"dataset": [d.to_toml(root) for d in entries]}) + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic.write_text(catalog_file, text)


SERIES_BEGIN = "# --- BEGIN simulated series (written by scripts/make_simulated_vintage.py --series; do not edit by hand) ---"
SERIES_END = "# --- END simulated series ---"
GERS_SERIES = "gers"


def gers_series(cat: Catalog, out_dir: Path, seed: int) -> list[Dataset]:
    """SIMULATED 2022 and 2025 vintages after the real Gers 2019 labels (FLAIR-1 values, same grid)."""
    ds = cat.get("GERS_NAF_2019")
    with rasterio.open(ds.path) as src:
        codes = classes.to_flair1(src.read(1), ds.nomenclature, src.nodata)
    entries, prev_id = [], ds.id
    for year in (2022, 2025):
        codes, made = simulate(codes, np.random.default_rng([seed, year]))
        path = out_dir / f"GERS_flair1_simulated_{year}.tif"
        with rasterio.open(ds.path) as src:
            profile = {**src.profile, "nodata": 0}
        with atomic.atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(codes, 1)
        print(f"{path.relative_to(cat.root)}: " + ("; ".join(made) or "no eligible land, unchanged"))
        entries.append(Dataset(id=f"GERS_SIM{year}", path=path, role="truth", vintage=str(year), domain=ds.domain,
                               zone=ds.zone, patch=ds.patch, simulated=True, series=GERS_SERIES,
                               title=f"SIMULATED Gers land cover {year} (FLAIR-1 values)",
                               extra={"simulated_from": prev_id, "made_by": "scripts/make_simulated_vintage.py",
                                      "seed": str(seed)}))
        prev_id = entries[-1].id
    return entries


def simulated_image(cat: Catalog, out_dir: Path, seed: int) -> list[Dataset]:
    """IMG_000473 where its SIMULATED 2024 truth changed, repainted with real pixels of the new class."""
    img, before, after = cat.get("IMG_000473"), cat.get("MSK_000473"), cat.get("MSK_000473_SIM2024")
    with rasterio.open(img.path) as src:
        pixels, profile = src.read(), src.profile
    b, a = (classes.to_flair1(raster.read(d.path, 1), d.nomenclature) for d in (before, after))
    pools: dict[int, list[np.ndarray]] = {}
    for im in cat.by_role("image"):
        truth = cat.truth_of(im)
        if truth is None or truth.simulated or not im.patch:
            continue
        with rasterio.open(im.path) as s_img, rasterio.open(truth.path) as s_msk:
            if s_img.count != pixels.shape[0]:
                continue
            p, t = s_img.read(), classes.to_flair1(s_msk.read(1), truth.nomenclature)
        for v in np.unique(t[t > 0]):
            pools.setdefault(int(v), []).append(p[:, t == v])
    rng = np.random.default_rng([seed, 473])
    out = pixels.copy()
    changed = (a != b) & (a > 0)
    for v in np.unique(a[changed]):
        pool = np.concatenate(pools.get(int(v)) or pools[V["impervious"]], axis=1)
        where = changed & (a == v)
        out[:, where] = pool[:, rng.integers(0, pool.shape[1], int(where.sum()))]
    path = out_dir / "IMG_000473_simulated_2024.tif"
    with atomic.atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(out)
    print(f"{path.relative_to(cat.root)}: {int(changed.sum())} px repainted where MSK_000473_SIM2024 changed")
    return [Dataset(id="IMG_000473_SIM2024", path=path, role="image", vintage=after.vintage, domain=img.domain,
                    zone=img.zone, patch=None, bands=img.bands, simulated=True,
                    title="SIMULATED aerial image 000473 (2024): real 2021 pixels, repainted where the simulated "
                          "2024 truth changed",
                    extra={"simulated_from": img.id, "truth": after.id, "made_by": "scripts/make_simulated_vintage.py",
                           "seed": str(seed)})]


def write_block(catalog_file: Path, entries: list[Dataset], root: Path, begin: str, end: str) -> None:
    """Replace one marked block of the catalog TOML (or append it), leaving every other line as it is."""
    text = catalog_file.read_text(encoding="utf-8")
    block = begin + "\n" + tomli_w.dumps({"dataset": [d.to_toml(root) for d in entries]}) + end + "\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic.write_text(catalog_file, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=config.DEMO_CATALOG)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--series", action="store_true",
                    help="write only the SIMULATED series block (Gers 2022/2025, image 000473 2024)")
    args = ap.parse_args(argv)
    cat = Catalog.load(args.catalog)
    out_dir = cat.root / OUT_DIR
    if args.series:
        entries = gers_series(cat, out_dir, args.seed) + simulated_image(cat, out_dir, args.seed)
        write_block(args.catalog, entries, cat.root, SERIES_BEGIN, SERIES_END)
        print(f"registered {len(entries)} simulated series datasets in {args.catalog}")
        return 0
    # mapped nomenclatures (the real Gers pair, raw ODEON codes) are left out: it has a real later vintage,
    # and simulate() writes FLAIR-1/FLAIR-HUB values only
    originals = [d for d in cat if d.role in ("truth", "prediction") and not d.simulated and d.patch
                 and d.nomenclature in classes.NOMENCLATURES]
    entries: list[Dataset] = []
    for ds in originals:
        entries += simulate_dataset(cat, ds, out_dir, args.seed)
    write_catalog_block(args.catalog, entries, cat.root)
    print(f"registered {len(entries)} simulated datasets in {args.catalog}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
