"""The simulated X-ray scanner as a device: a stream of bags leaving by every configured output.

The scenario's [scanner] section (ScannerSection) sets the pace, the contraband share and mix,
and which outputs run: DICOS files into a spool folder, PNG or TIFF pairs into spool folders,
C-STORE pushes to a receiver, and the MJPEG operator display. For each bag the control link (if
the scenario runs one) hears bag-in, then the image leaves by every output, then bag-out; while
the link's belt is stopped, no bags flow. Every bag's truth goes to `ground_truth.jsonl` in the
state folder so end-to-end tests can score the agent's alerts against it.

Faults (`inject`): "truncated_image" and "corrupt_image" damage the files of the next bags (or of
every bag during `duration_s`); "stall" stops the bag stream for `duration_s`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from common.configfile import Strict
from hw_sim.clock import SimClock
from hw_sim.xray import spool
from hw_sim.xray.dataset import bag_rng
from hw_sim.xray.dicos import dicos_dataset, encode
from hw_sim.xray.display import pseudocolour
from hw_sim.xray.scene import CLASSES, DEFAULT_MIX, check_mix, choose_contraband, make_bag

log = logging.getLogger("zastava.sim.scanner")

OUTPUTS = ("spool_dicos", "spool_png", "spool_tiff", "cstore", "mjpeg")
FAULTS = ("truncated_image", "corrupt_image", "stall")


class ScannerSection(Strict):
    """[scanner] in a scenario file. Relative spool paths are under the simulator's state folder."""

    bag_interval_s: float = Field(8.0, gt=0, allow_inf_nan=False, description="scenario seconds between bags")
    first_bag_s: float = Field(1.0, ge=0, allow_inf_nan=False, description="scenario seconds before the first bag")
    scan_s: float = Field(0.0, ge=0, allow_inf_nan=False,
                          description="scenario seconds from bag-in to the image (the bag crossing the tunnel)")
    contraband_share: float = Field(0.1, ge=0, le=1, description="share of bags carrying contraband")
    class_mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    outputs: list[str] = Field(default_factory=lambda: ["spool_dicos", "mjpeg"])
    spool_dicos_dir: Path = Path("spool/dicos")
    spool_png_dir: Path = Path("spool/png")
    spool_tiff_dir: Path = Path("spool/tiff")
    cstore_host: str = "127.0.0.1"
    cstore_port: int = Field(11112, ge=1, le=65535)
    cstore_ae: str = Field("ZASTAVA", min_length=1, max_length=16)
    cstore_calling_ae: str = Field("ZASTAVA_SIM", min_length=1, max_length=16)
    cstore_retries: int = Field(2, ge=0, le=20)
    mjpeg_host: str = "127.0.0.1"
    mjpeg_port: int = Field(0, ge=0, le=65535, description="0 = an ephemeral port")
    mjpeg_fps: float = Field(5.0, gt=0, le=60, allow_inf_nan=False)
    image_rows: int = Field(448, ge=64, le=2048)
    image_cols: int = Field(640, ge=64, le=4096)
    bag_id_prefix: str | None = Field(None, description="default: the run's start time, yymmddHHMMSS-")

    @field_validator("class_mix")
    @classmethod
    def _mix(cls, v: dict[str, float]) -> dict[str, float]:
        check_mix(v)
        return v

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if o not in OUTPUTS]
        if bad:
            raise ValueError(f"unknown output(s) {bad}; choose from {list(OUTPUTS)}")
        return list(dict.fromkeys(v))


class ScannerDevice:
    def __init__(self, section: ScannerSection, *, seed: int, clock: SimClock, state_dir: Path, link: Any,
                 stop: threading.Event):
        self.section, self.seed, self.clock, self.link = section, seed, clock, link
        self.ext_stop = stop
        self._stop = threading.Event()
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = section.bag_id_prefix
        if self.prefix is None:
            self.prefix = time.strftime("%y%m%d%H%M%S-", time.gmtime(clock.t0))
        self.lock = threading.Lock()
        self.counters = {"bags": 0, "files_written": 0, "files_damaged": 0, "skipped_belt_stopped": 0,
                         "skipped_stall": 0, "errors": 0}
        self.per_class = {"clean": 0, **{c: 0 for c in CLASSES}}
        self.faults: dict[str, dict] = {}  # kind -> {"until": sim s, "count": n}
        self.fault_rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
        self.urls: dict[str, str] = {}
        self.dirs: dict[str, Path] = {}
        for out, sub in (("spool_dicos", section.spool_dicos_dir), ("spool_png", section.spool_png_dir),
                         ("spool_tiff", section.spool_tiff_dir)):
            if out in section.outputs:
                d = sub if sub.is_absolute() else self.state_dir / sub
                d.mkdir(parents=True, exist_ok=True)
                self.dirs[out] = d.resolve()
                self.urls[out] = f"spool://{self.dirs[out]}"
        self.pusher = None
        if "cstore" in section.outputs:
            from hw_sim.xray.cstore import CStorePusher

            self.pusher = CStorePusher(section.cstore_host, section.cstore_port, section.cstore_ae,
                                       calling_ae=section.cstore_calling_ae, retries=section.cstore_retries)
            self.urls["cstore_target"] = f"dicos-scp://{section.cstore_host}:{section.cstore_port}?ae={section.cstore_ae}"
        self.mjpeg = None
        if "mjpeg" in section.outputs:
            from hw_sim.xray.mjpeg import MjpegServer

            self.mjpeg = MjpegServer(section.mjpeg_host, section.mjpeg_port, fps=section.mjpeg_fps)
            self.urls["mjpeg"] = f"capture:{self.mjpeg.url}"
        self.truth_path = self.state_dir / "ground_truth.jsonl"
        self.truth_file = open(self.truth_path, "a", encoding="utf-8")  # closed in close()
        self.thread = threading.Thread(target=self._run, name="sim-scanner", daemon=True)
        self.thread.start()
        log.info("X-ray scanner: a bag every %gs, %d%% contraband, outputs %s", section.bag_interval_s,
                 round(section.contraband_share * 100), ", ".join(f"{k}={v}" for k, v in self.urls.items()))

    # -- control ---------------------------------------------------------------------------------
    def _stopped(self) -> bool:
        return self._stop.is_set() or self.ext_stop.is_set()

    def _sleep_until(self, sim_t: float) -> bool:
        """Sleep to scenario time `sim_t` in short slices, so either stop event ends it promptly."""
        while not self._stopped():
            left = sim_t - self.clock.elapsed()
            if not left > 0:
                return True
            self.clock.sleep(min(left, 0.2 * max(self.clock.speed, 1e-9)), self._stop)
        return False

    def inject(self, kind: str, duration_s: float = 0.0, params: dict | None = None) -> None:
        """Start a fault: damaged files for `duration_s` (or the next `params['count']` bags), or a stall."""
        params = params or {}
        if kind not in FAULTS:
            log.warning("scanner: unknown fault %r ignored (known: %s)", kind, ", ".join(FAULTS))
            with self.lock:
                self.counters["errors"] += 1
            return
        now = self.clock.elapsed()
        with self.lock:
            if kind == "stall":
                self.faults[kind] = {"until": now + duration_s, "count": 0}
            elif duration_s > 0:
                self.faults[kind] = {"until": now + duration_s, "count": 0}
            else:
                self.faults[kind] = {"until": now, "count": int(params.get("count", 1))}
        log.info("scanner fault %s for %gs %s", kind, duration_s, params or "")

    def _fault_active(self, kind: str, consume: bool) -> bool:
        with self.lock:
            f = self.faults.get(kind)
            if f is None:
                return False
            if self.clock.elapsed() < f["until"]:
                return True
            if f["count"] > 0:
                if consume:
                    f["count"] -= 1
                return True
            del self.faults[kind]
            return False

    # -- the bag stream --------------------------------------------------------------------------
    def _run(self) -> None:
        s = self.section
        slot = 0
        index = 0
        while self._sleep_until(s.first_bag_s + slot * s.bag_interval_s):
            slot += 1
            if self._fault_active("stall", consume=False):
                with self.lock:
                    self.counters["skipped_stall"] += 1
                continue
            if self.link is not None and not self.link.belt_running:
                with self.lock:
                    self.counters["skipped_belt_stopped"] += 1
                continue
            try:
                self.one_bag(index)
            except Exception:  # one bad bag (disk full, a bug) must not stop the scanner
                log.exception("scanner: bag %d failed", index)
                with self.lock:
                    self.counters["errors"] += 1
            index += 1

    def one_bag(self, index: int) -> str:
        s = self.section
        rng = bag_rng(self.seed, index)
        cls = choose_contraband(rng, s.contraband_share, s.class_mix)
        bag_id = f"{self.prefix}{index:06d}"
        if self.link is not None:
            self.link.bag_in(bag_id)
        t_in = self.clock.elapsed()
        bag = make_bag(rng, cls, bag_id=bag_id, shape=(s.image_rows, s.image_cols))
        if s.scan_s > 0:  # a line-scan image is complete only once the bag has crossed the beam
            self._sleep_until(t_in + s.scan_s)
        t = self.clock.now()
        damage = None
        if self._fault_active("truncated_image", consume=True):
            damage = spool.truncate
        elif self._fault_active("corrupt_image", consume=True):
            damage = spool.corrupt
        self._emit(bag, t, damage)
        self._record(bag, index, t, cls, damage)
        if self.link is not None:
            self.link.bag_out(bag_id)
        return bag_id

    def _write(self, out: str, files: dict[str, bytes], damage) -> None:
        if damage is not None:
            files = {name: damage(data, self.fault_rng) for name, data in files.items()}
        spool.atomic_write_many(self.dirs[out], files)
        with self.lock:
            self.counters["files_written"] += len(files)
            self.counters["files_damaged"] += len(files) if damage is not None else 0

    def _emit(self, bag, t: float, damage) -> None:
        datasets = None
        for out in self.section.outputs:
            try:
                if out in ("spool_dicos", "cstore") and datasets is None:
                    datasets = [dicos_dataset(img, e, bag_id=bag.bag_id, t=t, seed=self.seed,
                                              pixel_spacing_mm=bag.pixel_spacing_mm)
                                for e, img in (("high", bag.high), ("low", bag.low))]
                if out == "spool_dicos":
                    self._write(out, {f"{bag.bag_id}_{ds.ImageType[2].lower()}.dcs": encode(ds) for ds in datasets},
                                damage)
                elif out == "spool_png":
                    self._write(out, spool.bag_image_files(bag.high, bag.low, bag.bag_id, "png"), damage)
                elif out == "spool_tiff":
                    self._write(out, spool.bag_image_files(bag.high, bag.low, bag.bag_id, "tiff"), damage)
                elif out == "cstore" and self.pusher is not None:
                    self.pusher.submit(bag.bag_id, datasets)
                elif out == "mjpeg" and self.mjpeg is not None:
                    self.mjpeg.publish(pseudocolour(bag.high, bag.low))
            except Exception as e:  # one output failing (disk full, encoder) leaves the others running
                log.error("scanner: output %s failed for bag %s: %s", out, bag.bag_id, e)
                with self.lock:
                    self.counters["errors"] += 1

    def _record(self, bag, index: int, t: float, cls: str | None, damage) -> None:
        rec = {"bag_id": bag.bag_id, "index": index, "t": t, "kind": bag.kind, "contraband": cls,
               "damaged": damage.__name__ if damage else None,
               "objects": [o.as_json() for o in bag.objects]}
        with self.lock:
            self.counters["bags"] += 1
            for o in bag.objects:
                self.per_class[o.cls] += 1
            if not bag.objects:
                self.per_class["clean"] += 1
            self.truth_file.write(json.dumps(rec, sort_keys=True) + "\n")
            self.truth_file.flush()

    def stats(self) -> dict:
        with self.lock:
            out: dict[str, Any] = dict(self.counters, per_class=dict(self.per_class),
                                       faults_active=sorted(self.faults))
        if self.pusher is not None:
            out["cstore"] = self.pusher.stats.as_dict()
            out["pushes_failed"] = out["cstore"]["failed"] + out["cstore"]["dropped"]
        if self.mjpeg is not None:
            out["mjpeg_clients"] = self.mjpeg.hub.clients
        return out

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)
        if self.pusher is not None:
            self.pusher.close()
        if self.mjpeg is not None:
            self.mjpeg.close()
        with self.lock:
            self.truth_file.close()


def start(section: ScannerSection, *, seed: int, clock: SimClock, state_dir: Path, link: Any = None,
          stop: threading.Event | None = None) -> ScannerDevice:
    """Start the scanner's bag stream in a thread (see hw_sim/runner.py)."""
    return ScannerDevice(section, seed=seed, clock=clock, state_dir=state_dir, link=link,
                         stop=stop or threading.Event())
