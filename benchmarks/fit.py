"""End-to-end :func:`remap.fit` throughput for each input shape, and streaming memory.

The batch is made of raw simulated MARVELS-like calibration stars
(:func:`remap.simulate.simulated_stars`: spikes, noise, continuum distortion,
both beams): a few stars are simulated and copied with fresh noise (seeded) up
to the batch size, so that simulating them does not dominate the run.  The
same stars are given to :func:`remap.fit` with the default model in four
shapes:

* ``2-D``: one `specutils.Spectrum` holding every star as a row of a common
  4850-5750 Å axis (both beams in one spectrum);
* ``list of dicts``: a list of stars, each ``{"A": Spectrum, "B": Spectrum}``
  (what reading one two-beam file per star gives);
* ``SpectrumList per star``: a list of ``SpectrumList([A, B])``;
* ``list of 1-D spectra``: a list of 1-D spectra covering both beams.

For each shape the benchmark prints the throughput end to end (stars/s; the
fastest of 3 fits, 1 with ``--quick``), the
time of the two networks alone on the same number of rows (in the blocks the
``network`` stage uses; timed right before each of those fits, the fastest
of them: baseline and fit see the same load of this shared machine), their
ratio (fit / networks), the time per stage
(`remap.FitResult.timings`) and whether the results equal those of the 2-D
input, and the 2-D input once more with the compiled stages on one thread
(``REMAP_NUM_THREADS=1``; by default they split their rows between one
thread per core), and once more with ``chunks_in_flight=1`` (one chunk of 256
stars after the other instead of two at once in threads: its stage times do
not overlap), and the same stars at the radial velocities of a real catalogue
(uniform in +-100 km/s, :func:`at_velocities`): as one 2-D spectrum (rows
shifted on the common axis: their beams cover the model grids in windows of
many sizes) and as a list of dicts whose stars each have their own
Doppler-scaled wavelength axes (files with their own wavelength solutions).
(The simulated calibration stars themselves are within a few km/s of rest.)
Then it streams 1,000 and 50,000 stars (``--quick``: 200 and 2,000)
through :func:`remap.fit_iter` from a generator, each in a fresh subprocess,
and prints their peak resident memory and its ratio.

The model is loaded and the networks traced in a warm-up call first, then all
the stars are fitted once without being counted (the process's memory pools
grow to a fit's size: the first fit of that size pays for it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import astropy.units as u
import numpy as np

__all__ = ["make_batch", "combined_batch", "shapes", "at_velocities", "run", "network_seconds",
           "stream_rss", "main"]


def _stage_rows(model):
    """Rows of the stage table: the pipeline's stages in order, the network per beam."""
    import remap

    rows = []
    for name, _ in remap.inference.pipeline(model):
        rows += [f"network {b}" for b in model.beams] if name == "network" else [name]
    return rows


def _base_stars(n_unique, seed):
    from remap.simulate import simulated_stars
    return [s for s, _ in simulated_stars("calibration", n=n_unique, seed=seed)]


def _copy(src, rng, noisy):
    """A copy of a star (fresh noise if ``noisy``); beam B's first pixel (5280 Å, shared
    with beam A) is made equal to A's last, so that every input shape holds the same data."""
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    star = {}
    for beam, spec in src.items():
        sigma = spec.uncertainty.array.copy()
        flux = spec.flux.value + (sigma * rng.standard_normal(sigma.shape) if noisy else 0.0)
        if beam == "B":
            flux[0], sigma[0] = star["A"].flux.value[-1], star["A"].uncertainty.array[-1]
        star[beam] = Spectrum(flux=flux * spec.flux.unit, spectral_axis=spec.spectral_axis,
                              uncertainty=StdDevUncertainty(sigma * spec.flux.unit),
                              meta=dict(spec.meta))
    return star


def make_batch(n, n_unique=16, seed=0):
    """``n`` raw two-beam stars: ``n_unique`` simulated ones, copied with fresh noise.

    Returns
    -------
    stars : list of dict of str to `specutils.Spectrum`
    """
    base = _base_stars(min(n, n_unique), seed)
    rng = np.random.default_rng(seed)
    return [_copy(base[i % len(base)], rng, i >= len(base)) for i in range(n)]


def _combined_arrays(star):
    a, b = star["A"], star["B"]
    wave = np.concatenate([a.spectral_axis.value, b.spectral_axis.value[1:]])
    flux = np.concatenate([a.flux.value, b.flux.value[1:]])
    sigma = np.concatenate([a.uncertainty.array, b.uncertainty.array[1:]])
    return wave, flux, sigma


def combined_batch(stars):
    """The stars of :func:`make_batch` as one 2-D spectrum on a common axis (A + B)."""
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    wave = _combined_arrays(stars[0])[0]
    flux = np.stack([_combined_arrays(s)[1] for s in stars])
    sigma = np.stack([_combined_arrays(s)[2] for s in stars])
    unit = stars[0]["A"].flux.unit
    return Spectrum(flux=flux * unit, spectral_axis=wave * u.AA,
                    uncertainty=StdDevUncertainty(sigma * unit),
                    meta={"wavelength_medium": stars[0]["A"].meta.get("wavelength_medium")})


def _one_d(star):
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    wave, flux, sigma = _combined_arrays(star)
    unit = star["A"].flux.unit
    return Spectrum(flux=flux * unit, spectral_axis=wave * u.AA,
                    uncertainty=StdDevUncertainty(sigma * unit),
                    meta={"wavelength_medium": star["A"].meta.get("wavelength_medium")})


def shapes(stars):
    """The four input shapes of the same stars: name -> input of :func:`remap.fit`."""
    from specutils import SpectrumList

    return {"2-D": combined_batch(stars),
            "list of dicts": stars,
            "SpectrumList per star": [SpectrumList([s["A"], s["B"]]) for s in stars],
            "list of 1-D spectra": [_one_d(s) for s in stars]}


def at_velocities(stars, rv_max=100.0, seed=1):
    """The stars of :func:`make_batch` moved to radial velocities ``U(-rv_max, rv_max)`` km/s.

    Returns ``{"2-D": one spectrum on the common axis (each row's flux shifted: cubic
    spline; the pixels whose source is off the axis keep their flux), "list of dicts":
    each star's beams on their own Doppler-scaled axes (one wavelength solution per
    star), "rv": the velocities (km/s)}``.
    """
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from remap.spectra.resampling import resample_rows
    from remap.spectra.velocity import doppler_factor

    rv = np.random.default_rng(seed).uniform(-rv_max, rv_max, len(stars))
    factor = np.asarray(doppler_factor(rv))
    two = combined_batch(stars)
    wave = two.spectral_axis.to_value(u.AA)
    flux, sigma = two.flux.value, two.uncertainty.array
    # the flux at observed λ is the rest-frame flux at λ / factor (clipped to the axis)
    inner = (wave / factor.max() >= wave[0]) & (wave / factor.min() <= wave[-1])
    shifted = flux.copy()
    shifted[:, inner], _, _ = resample_rows(wave, wave[inner], flux, scale=1.0 / factor)
    unit = two.flux.unit
    moved = Spectrum(flux=shifted * unit, spectral_axis=two.spectral_axis,
                     uncertainty=StdDevUncertainty(sigma * unit), meta=dict(two.meta))
    own = [{b: Spectrum(flux=sp.flux, spectral_axis=sp.spectral_axis * f,
                        uncertainty=sp.uncertainty, meta=dict(sp.meta))
            for b, sp in star.items()} for star, f in zip(stars, factor)]
    return {"2-D": moved, "list of dicts": own, "rv": rv}


def run(spectra, model, batch_size=256, repeats=1, baseline=None, **options):
    """Fit ``repeats`` times; return (wall seconds, stage timings, result) of the fastest.

    With ``baseline`` (a callable returning seconds, e.g. the networks alone) it is
    timed before each fit, so that both see the same load of the machine, and the
    fastest baseline is returned fourth.
    """
    import remap

    best = None
    base = np.inf
    for _ in range(repeats):
        if baseline is not None:
            base = min(base, baseline())
        start = time.perf_counter()
        result = remap.fit(spectra, model=model, batch_size=batch_size, **options)
        wall = time.perf_counter() - start
        if best is None or wall < best[0]:
            best = (wall, result.timings, result)
    return best if baseline is None else best + (base,)


def network_seconds(model, n, repeats=2):
    """Seconds the beams' networks alone take on ``n`` rows (best of ``repeats``)."""
    from remap.inference.stages import Network

    stage = Network(model, None)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for beam in model.beams:
            stage._predict(beam, np.ones((n, model.grid(beam)["npix"]), np.float32))
        best = min(best, time.perf_counter() - start)
    return best


def _print_table(label, n, wall, timings, net, stages):
    print(f"\n{label}: {n} stars in {wall:.2f} s = {n / wall:.0f} stars/s; networks alone "
          f"{net:.2f} s ({n / net:.0f} stars/s); fit/networks = {wall / net:.1f}")
    print(f"  {'stage':<12} {'seconds':>8} {'share':>7} {'ms/star':>8}")
    accounted = 0.0
    for stage in stages:
        sec = timings.get(stage, 0.0)
        accounted += sec
        print(f"  {stage:<12} {sec:8.3f} {sec / wall:7.1%} {1e3 * sec / n:8.3f}")
    other = wall - accounted
    if other >= 0:
        print(f"  {'other':<12} {other:8.3f} {other / wall:7.1%} {1e3 * other / n:8.3f}"
              "   (input iteration, result assembly)")
    else:   # chunks in flight at once: the stages of two chunks overlap in time
        print(f"  (stage times summed over chunks fitted at once: {accounted:.2f} s in "
              f"{wall:.2f} s of wall time)")


def _max_diff(a, b):
    return max(float(np.nanmax(np.abs(a[h].median.value - b[h].median.value)))
               for h in a.parameters)


# ---------------------------------------------------------------------- streaming RSS

def _peak_rss_mib(resource):
    """This process's peak resident memory (MiB): ``VmHWM`` of ``/proc/self/status`` where
    there is one (Linux: the high-water mark of this process's own memory, reset by exec),
    else ``ru_maxrss``, which Linux carries over from the forking parent across exec (a
    child of a benchmark process holding 2-3 GiB would report those)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0      # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def _stream(n, batch_size, options):
    """Child process: stream ``n`` stars through fit_iter; print peak RSS (JSON)."""
    import resource

    import remap

    model = remap.default_model()
    base = _base_stars(16, 0)
    remap.fit(base[:2], model=model)          # warm-up: tracing, caches
    rng = np.random.default_rng(1)

    def stars():
        for i in range(n):
            yield _copy(base[i % len(base)], rng, True)

    start = time.perf_counter()
    done = flagged = 0
    for result in remap.fit_iter(stars(), model=model, batch_size=batch_size, **options):
        done += len(result)
        flagged += int(np.count_nonzero(result.flags & remap.Flag.BAD_INPUT))
    wall = time.perf_counter() - start
    rss = _peak_rss_mib(resource)
    print(json.dumps({"n": done, "bad": flagged, "seconds": wall, "peak_rss_mib": rss}))


def stream_rss(n, batch_size=256, **options):
    """Peak RSS (MiB) and seconds of streaming ``n`` stars, measured in a subprocess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-m", "benchmarks.fit", "--stream", str(n),
                          str(batch_size), json.dumps(options)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(quick=False, stream=True):
    """Run the benchmark and print its tables (``stream=False``: without the RSS part)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import remap
    from remap.inference.stages import stage_options

    n = 200 if quick else 1000
    repeats = 1 if quick else 3     # the fastest of 3: the machines are shared and noisy
    t0 = time.perf_counter()
    model = remap.default_model()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    stars = make_batch(n)
    inputs = shapes(stars)
    t_make = time.perf_counter() - t0
    print(f"remap.fit benchmark: default model ({model.path.name}), {n} two-beam stars, "
          f"{os.cpu_count()} CPUs; model load {t_load:.1f} s, making the inputs {t_make:.1f} s")
    warm = time.perf_counter()
    remap.fit(stars[:2], model=model)
    print(f"warm-up (2 stars: network tracing, neighbour reference distances): "
          f"{time.perf_counter() - warm:.1f} s")
    warm = time.perf_counter()
    remap.fit(inputs["2-D"], model=model)
    print(f"warm-up ({n} stars, 2-D, not counted: the process's memory pools grow to a "
          f"fit's size): {time.perf_counter() - warm:.2f} s")
    stages = _stage_rows(model)
    reference = None
    summary = []
    skip_rv = {"rv": 0} if "rv" in stage_options() else {}
    runs = [(label, spectra, {}) for label, spectra in inputs.items()]
    if skip_rv:
        runs.append(("list of dicts, rv=0", inputs["list of dicts"], skip_rv))
    # one chunk after the other: the stage times without overlap, and the gain of the threads
    runs.append(("2-D, 1 chunk in flight", inputs["2-D"], {"chunks_in_flight": 1}))
    # stars at the velocities of a real catalogue: their beams cover the model grids in
    # windows of many sizes, and files of one star each have their own wavelength solution
    moving = at_velocities(stars, seed=1)
    velocity_runs = {"2-D, rv +-100 km/s": moving["2-D"],
                     "dicts, own grids, rv +-100": moving["list of dicts"]}
    runs += [(label, spectra, {}) for label, spectra in velocity_runs.items()]

    def baseline():
        return network_seconds(model, n, repeats=1)

    for label, spectra, options in runs:
        wall, timings, result, net = run(spectra, model, repeats=repeats, baseline=baseline,
                                         **options)
        _print_table(label, n, wall, timings, net, stages)
        flagged = int(np.count_nonzero(result.flags))
        if label in velocity_runs:
            moved = {h: np.median(np.abs(result[h].median.value - reference[h].median.value))
                     for h in result.parameters}
            rv = np.median(np.abs(u.Quantity(result.values["rv"]).to_value(u.km / u.s)
                                  - moving["rv"]))
            print(f"  vs the stars at rest: median |Δ| "
                  f"{', '.join(f'{h} {v:.3g}' for h, v in moved.items())}; rv recovered "
                  f"to a median |Δ| of {rv:.2f} km/s; flagged stars: {flagged} of {n}")
        else:
            if reference is None:
                reference = result
                same = "reference"
            else:
                diff = _max_diff(reference, result)
                same = "identical" if diff == 0 else f"max |Δ median| {diff:.3g}"
            print(f"  results vs 2-D: {same}; flagged stars: {flagged} of {n}")
        summary.append((label, n / wall, wall / net))
    # the compiled stages split their rows between threads (remap._util.threads):
    # the 2-D input again on one thread, for the gain
    from remap._util.threads import n_threads
    threads = n_threads()
    if threads > 1:
        before = os.environ.get("REMAP_NUM_THREADS")
        os.environ["REMAP_NUM_THREADS"] = "1"
        try:
            wall, timings, result, net = run(inputs["2-D"], model, repeats=repeats,
                                             baseline=baseline)
        finally:
            if before is None:
                os.environ.pop("REMAP_NUM_THREADS")
            else:
                os.environ["REMAP_NUM_THREADS"] = before
        diff = _max_diff(reference, result)
        label = "2-D, kernels on 1 thread"
        _print_table(label, n, wall, timings, net, stages)
        print(f"  results vs {threads} threads: "
              f"{'identical' if diff == 0 else f'max |Δ median| {diff:.3g}'}")
        summary.append((label, n / wall, wall / net))
    print(f"\nsummary ({threads} kernel thread(s) unless stated):")
    for label, rate, ratio in summary:
        print(f"  {label:<24} {rate:7.0f} stars/s   fit/networks {ratio:5.1f}")

    if not stream:
        return
    small, large = (200, 2000) if quick else (1000, 50000)
    print(f"\nstreaming through remap.fit_iter (generator, batch_size 256, fresh "
          f"subprocess each{', rv=0: radial velocities not measured' if skip_rv else ''}):")
    rss = {}
    for count in (small, large):
        r = stream_rss(count, **skip_rv)
        rss[count] = r["peak_rss_mib"]
        print(f"  {r['n']:>6} stars: peak RSS {r['peak_rss_mib']:7.0f} MiB, "
              f"{r['seconds']:.1f} s ({r['n'] / r['seconds']:.0f} stars/s incl. making them)")
    print(f"  peak RSS ratio {large} / {small} stars: {rss[large] / rss[small]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--stream":
        _stream(int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]))
    else:
        main(quick="--quick" in sys.argv)
