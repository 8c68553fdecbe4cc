"""Complex-baseband emitters: the signals a checkpoint's receiver hears, real enough to decode.

Each class here is a stateful generator (`Waveform`) of unit-power complex baseband centred on
0 Hz at any sample rate: `read(n)` continues the signal where the previous call stopped (phase,
audio and symbol streams are continuous), so the rtl_tcp server can stream it in chunks and a
dataset writer can cut captures from it. Everything random comes from the np.random.Generator
given at construction, so a seed gives the same samples.

Power convention (the SNR definition in docs/rtl_tcp.md rests on it): while an emitter transmits,
its mean power is 1.0. OOK is the one class with keyed gaps inside a transmission: its *key-down*
(carrier-on) power is 1.0, as a fob's transmitter power is what it is whatever the bits.
`bandwidth_hz` is the nominal occupied bandwidth that holds >= 99% of the power.

Class names are shared with the RF classifier (detectors/rf) and must not change: see CLASSES.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

CLASSES: tuple[str, ...] = ("noise", "wfm", "nfm", "am", "ook", "fsk2", "fsk4", "lora", "gmsk", "jammer")

PMR446_BASE_HZ = 446.00625e6
PMR446_STEP_HZ = 12.5e3
OOK_FOB_HZ = 433.92e6


def pmr446_channel_hz(ch: int) -> float:
    """Centre of PMR446 channel `ch` (1..16), 446.00625 MHz + (ch-1) * 12.5 kHz."""
    if not 1 <= ch <= 16:
        raise ValueError(f"PMR446 channel must be 1..16, got {ch}")
    return PMR446_BASE_HZ + (ch - 1) * PMR446_STEP_HZ


# ---------------------------------------------------------------------------------------------
# shared machinery


class _Phase:
    """Integrates an instantaneous frequency into phase, carrying the phase across calls."""

    def __init__(self, phase0: float = 0.0):
        self.phase = phase0

    def integrate(self, freq_hz: np.ndarray, rate_hz: float) -> np.ndarray:
        ph = np.cumsum(freq_hz, dtype=np.float64) * (2 * np.pi / rate_hz)
        ph += self.phase
        if len(ph):
            self.phase = float(ph[-1]) % (2 * np.pi)
        return ph


def _wrap(x: np.ndarray, period: float) -> np.ndarray:
    """x mod period; np.mod is ~10x slower than this on float64 (it handles signs and infs)."""
    return x - np.floor(x * (1.0 / period)) * period


def cis(phase: np.ndarray) -> np.ndarray:
    """exp(j*phase) as complex64: wrapped in float64, then float32 cos/sin (~20x cheaper than exp)."""
    p = _wrap(phase, 2 * np.pi).astype(np.float32)
    out = np.empty(len(p), np.complex64)
    out.real = np.cos(p)
    out.imag = np.sin(p)
    return out


class _SymbolClock:
    """Maps a stream of symbols at `baud` onto sample instants at `rate`, across frames.

    Symbol periods are rarely a whole number of samples (GSM's 270.833 kBd at 2.4 MS/s), so the
    clock keeps the fractional symbol time of the next sample from one frame to the next.
    """

    def __init__(self, baud: float, rate_hz: float):
        self.baud, self.rate = baud, rate_hz
        self.u0 = 0.0  # symbol time (in symbols) of the next sample, relative to the frame start

    def sample_times(self, nsym: int) -> np.ndarray:
        step = self.baud / self.rate
        n = max(0, math.ceil((nsym - self.u0) / step))
        u = self.u0 + np.arange(n) * step
        self.u0 = (self.u0 + n * step) - nsym
        return u


def _gaussian_taps(bt: float, os: int, span: int = 4) -> np.ndarray:
    t = np.arange(-span * os // 2, span * os // 2 + 1) / os
    sigma = math.sqrt(math.log(2)) / (2 * math.pi * bt)
    h = np.exp(-(t**2) / (2 * sigma**2))
    return h / h.sum()


def _rrc_taps(alpha: float, os: int, span: int = 8) -> np.ndarray:
    t = np.arange(-span * os // 2, span * os // 2 + 1) / os
    h = np.empty_like(t)
    for i, x in enumerate(t):
        if abs(x) < 1e-9:
            h[i] = 1 - alpha + 4 * alpha / math.pi
        elif abs(abs(x) - 1 / (4 * alpha)) < 1e-9:
            h[i] = alpha / math.sqrt(2) * ((1 + 2 / math.pi) * math.sin(math.pi / (4 * alpha))
                                           + (1 - 2 / math.pi) * math.cos(math.pi / (4 * alpha)))
        else:
            h[i] = (math.sin(math.pi * x * (1 - alpha)) + 4 * alpha * x * math.cos(math.pi * x * (1 + alpha))) / (
                math.pi * x * (1 - (4 * alpha * x) ** 2))
    return h / h.sum()


def _shaped_message(levels: np.ndarray, taps: np.ndarray, os: int, u: np.ndarray) -> np.ndarray:
    """Pulse-shape symbol levels at `os` samples/symbol, then read it at symbol times `u`.

    Filtering at a small oversampling and interpolating is what keeps GFSK/GMSK cheap at
    2.4 MS/s: the filter runs on 8 points per symbol instead of ~60.
    """
    x = np.repeat(levels.astype(np.float64), os)
    y = np.convolve(x, taps, mode="same")
    grid = (np.arange(len(y)) + 0.5) / os
    return np.interp(u, grid, y)


class _Audio:
    """A deterministic audio programme as a function of absolute sample index.

    A fixed tone (for decoder tests) or a voice-like mix: a few partials whose loudness rises
    and falls at a syllable rate, which is what speech looks like to a spectrum monitor.
    """

    def __init__(self, rng: np.random.Generator, tone_hz: float | None, fmax: float, rate_hz: float):
        self.rate = rate_hz
        if tone_hz is not None:
            self.freqs = np.array([float(tone_hz)])
            self.amps = np.array([1.0])
            self.syll = None
        else:
            k = 4
            self.freqs = rng.uniform(180.0, min(fmax, 3400.0), k)
            self.amps = rng.uniform(0.3, 1.0, k)
            self.amps /= self.amps.sum()
            self.syll = (rng.uniform(2.5, 5.0), rng.uniform(0, 2 * np.pi))
        self.phases = rng.uniform(0, 2 * np.pi, len(self.freqs))
        self.n = 0

    def read(self, n: int) -> np.ndarray:
        """n samples in [-1, 1], computed at <= 48 kS/s and interpolated (sin is the hot spot)."""
        dec = max(1, int(self.rate // 48000))
        pos = (self.n + np.arange(n)) / dec
        j0 = int(math.floor(pos[0])) if n else 0
        m = (int(math.floor(pos[-1])) - j0 + 2) if n else 0
        grid = j0 + np.arange(m)
        t = grid * dec / self.rate
        a = np.zeros(m)
        for f, amp, ph in zip(self.freqs, self.amps, self.phases, strict=True):
            a += amp * np.sin(2 * np.pi * f * t + ph)
        if self.syll is not None:
            a *= 0.55 + 0.45 * np.sin(2 * np.pi * self.syll[0] * t + self.syll[1])
        self.n += n
        return np.interp(pos, grid, a) if dec > 1 else a[:n]


class Waveform(ABC):
    """Base: unit-power complex baseband, read in chunks; subclasses produce whole frames.

    `read(n)` returns exactly n samples. `restart()` drops the rest of the current frame so the
    next read begins a fresh packet/key press, as a transmitter keyed up again does.
    """

    cls: str = ""
    bandwidth_hz: float = 0.0

    def __init__(self, rng: np.random.Generator, rate_hz: float):
        if rate_hz <= 0:
            raise ValueError("rate_hz must be > 0")
        self.rng = rng
        self.rate = float(rate_hz)
        self._buf: list[np.ndarray] = []
        self._have = 0

    @abstractmethod
    def _frame(self) -> np.ndarray:
        """The next natural piece of the signal (a packet, a key-press frame, ~20 ms of audio)."""

    def read(self, n: int) -> np.ndarray:
        while self._have < n:
            f = np.asarray(self._frame(), np.complex64)
            if len(f):
                self._buf.append(f)
                self._have += len(f)
        out = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
        head, rest = out[:n], out[n:]
        self._buf = [rest] if len(rest) else []
        self._have = len(rest)
        return head

    def restart(self) -> None:
        self._buf, self._have = [], 0

    def params(self) -> dict:
        """The parameters worth recording in an annotation."""
        return {}


# ---------------------------------------------------------------------------------------------
# analogue voice and broadcast


class WFM(Waveform):
    """Wideband FM broadcast: mono programme + 19 kHz stereo pilot, 75 kHz peak deviation."""

    cls = "wfm"

    def __init__(self, rng, rate_hz, *, deviation_hz: float = 75e3, tone_hz: float | None = None,
                 pilot: bool = True, frame_s: float = 0.02):
        super().__init__(rng, rate_hz)
        self.dev, self.pilot = deviation_hz, pilot
        self.audio = _Audio(rng, tone_hz, 15e3, rate_hz)
        self.ph = _Phase(rng.uniform(0, 2 * np.pi))
        self.n_frame = max(1, int(frame_s * rate_hz))
        self.n = 0
        self.bandwidth_hz = 2 * (deviation_hz + 15e3) + 20e3

    def _frame(self):
        n = self.n_frame
        m = 0.9 * self.audio.read(n)
        if self.pilot:
            t = (self.n + np.arange(n)) / self.rate
            m += 0.1 * np.sin(2 * np.pi * 19e3 * t)
        self.n += n
        return cis(self.ph.integrate(self.dev * m, self.rate))

    def params(self):
        return {"deviation_hz": self.dev}


class NFM(Waveform):
    """Narrowband FM voice (PMR446: 12.5 kHz channels, 2.5 kHz deviation, optional CTCSS)."""

    cls = "nfm"

    def __init__(self, rng, rate_hz, *, deviation_hz: float = 2.5e3, tone_hz: float | None = None,
                 ctcss_hz: float | None = None, frame_s: float = 0.02):
        super().__init__(rng, rate_hz)
        self.dev, self.ctcss = deviation_hz, ctcss_hz
        self.audio = _Audio(rng, tone_hz, 3000.0, rate_hz)
        self.ph = _Phase(rng.uniform(0, 2 * np.pi))
        self.n_frame = max(1, int(frame_s * rate_hz))
        self.n = 0
        self.bandwidth_hz = 12.5e3

    def _frame(self):
        n = self.n_frame
        m = self.audio.read(n)
        if self.ctcss:
            t = (self.n + np.arange(n)) / self.rate
            m = 0.85 * m + 0.15 * np.sin(2 * np.pi * self.ctcss * t)
        self.n += n
        return cis(self.ph.integrate(self.dev * m, self.rate))

    def params(self):
        return {"deviation_hz": self.dev, "ctcss_hz": self.ctcss}


class AM(Waveform):
    """Double-sideband AM with carrier (airband-style), audio to ~4 kHz."""

    cls = "am"

    def __init__(self, rng, rate_hz, *, depth: float = 0.7, tone_hz: float | None = None, frame_s: float = 0.02):
        super().__init__(rng, rate_hz)
        if not 0 < depth <= 1:
            raise ValueError("AM depth must be in (0, 1]")
        self.depth = depth
        self.audio = _Audio(rng, tone_hz, 4000.0, rate_hz)
        self.n_frame = max(1, int(frame_s * rate_hz))
        self.carrier_phase = rng.uniform(0, 2 * np.pi)
        # mean power of (1 + d*a) is 1 + d^2 <a^2>: measured on one second of this very programme
        # (a copy, so the real one still starts at sample 0)
        a = copy.copy(self.audio).read(int(min(rate_hz, 2.4e6)))
        self.scale = 1.0 / math.sqrt(1.0 + depth**2 * float(np.mean(a * a)))
        self.bandwidth_hz = 10e3

    def _frame(self):
        env = (1.0 + self.depth * self.audio.read(self.n_frame)) * self.scale
        return (env * np.exp(1j * self.carrier_phase)).astype(np.complex64)

    def params(self):
        return {"depth": self.depth}


# ---------------------------------------------------------------------------------------------
# key fobs


def pt2262_bits(trits: str) -> int:
    """A PT2262 12-trit address/data word as the 24 PWM bits it sends ('0'->00, '1'->11, 'F'->01)."""
    if len(trits) != 12 or any(c not in "01F" for c in trits.upper()):
        raise ValueError("a PT2262 code is 12 trits of 0, 1 or F")
    v = 0
    for c in trits.upper():
        v = (v << 2) | {"0": 0b00, "1": 0b11, "F": 0b01}[c]
    return v


def ev1527_units(code: int) -> np.ndarray:
    """One EV1527/PT2262 frame as a 0/1 level per time unit: sync (1 high, 31 low), 24 PWM bits.

    Bit 0 = 1 unit high + 3 low, bit 1 = 3 high + 1 low, MSB first (20-bit address, 4 data bits).
    """
    if not 0 <= code < (1 << 24):
        raise ValueError("an EV1527 code is 24 bits")
    units = [1] + [0] * 31
    for i in range(23, -1, -1):
        units += [1, 1, 1, 0] if (code >> i) & 1 else [1, 0, 0, 0]
    return np.array(units, np.float32)


class OOK(Waveform):
    """A 433.92 MHz key fob: EV1527/PT2262 frames repeated while the button is held.

    Edges rise over ~`edge_s` (a real fob's PA does not switch instantly), which also keeps the
    occupied bandwidth to a few kHz around the carrier.
    """

    cls = "ook"

    def __init__(self, rng, rate_hz, *, code: int | None = None, unit_s: float = 460e-6, edge_s: float = 40e-6):
        super().__init__(rng, rate_hz)
        self.code = int(rng.integers(0, 1 << 24)) if code is None else int(code)
        self.unit_s = unit_s
        levels = ev1527_units(self.code)
        n = int(round(len(levels) * unit_s * rate_hz))
        idx = np.minimum((np.arange(n) / (unit_s * rate_hz)).astype(np.int64), len(levels) - 1)
        env = levels[idx].astype(np.float64)
        k = max(1, int(edge_s * rate_hz))
        if k > 1:
            w = np.hanning(k + 2)[1:-1]
            env = np.convolve(np.concatenate([env[-k:], env]), w / w.sum(), mode="full")[k:k + n]
        self.env = env
        self.phase = rng.uniform(0, 2 * np.pi)
        self.bandwidth_hz = max(20e3, 8.0 / unit_s)

    def _frame(self):
        return (self.env * np.exp(1j * self.phase)).astype(np.complex64)

    def params(self):
        return {"code": self.code, "unit_s": self.unit_s}


# ---------------------------------------------------------------------------------------------
# digital FSK family


def _bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, np.uint8))


def crc16_ccitt(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


class FSK2(Waveform):
    """2-FSK/GFSK telemetry (a drone's 433/868/915 MHz link): preamble, sync word, payload, CRC.

    Packets follow each other while the emitter is on. bt=None gives plain (unfiltered) 2-FSK.
    """

    cls = "fsk2"

    def __init__(self, rng, rate_hz, *, baud: float = 38400.0, deviation_hz: float = 20e3,
                 bt: float | None = 0.5, payload_bytes: tuple[int, int] = (16, 64), sync: int = 0x2DD4):
        super().__init__(rng, rate_hz)
        self.baud, self.dev, self.bt, self.sync = baud, deviation_hz, bt, sync
        self.payload_bytes = payload_bytes
        self.clock = _SymbolClock(baud, rate_hz)
        self.os = 8
        self.taps = _gaussian_taps(bt, self.os) if bt else np.array([1.0])
        self.ph = _Phase(rng.uniform(0, 2 * np.pi))
        self.bandwidth_hz = 2 * deviation_hz + 1.2 * baud
        self.last_packet = b""

    def packet(self) -> bytes:
        lo, hi = self.payload_bytes
        payload = self.rng.integers(0, 256, int(self.rng.integers(lo, hi + 1)), dtype=np.uint8).tobytes()
        body = bytes([len(payload)]) + payload
        return b"\xaa" * 4 + self.sync.to_bytes(2, "big") + body + crc16_ccitt(body).to_bytes(2, "big")

    def _frame(self):
        self.last_packet = self.packet()
        levels = _bits(self.last_packet).astype(np.float64) * 2 - 1
        u = self.clock.sample_times(len(levels))
        if self.bt:
            m = _shaped_message(levels, self.taps, self.os, u)
        else:
            m = levels[np.minimum(u.astype(np.int64), len(levels) - 1)]
        return cis(self.ph.integrate(self.dev * m, self.rate))

    def params(self):
        return {"baud": self.baud, "deviation_hz": self.dev, "bt": self.bt}


class FSK4(Waveform):
    """DMR-like 4-FSK (C4FM): 4800 Bd, deviations +-648/+-1944 Hz, root-raised-cosine shaped.

    Continuous as a repeater's downlink; a handset's TDMA bursts (27.5 ms of every 60 ms) come
    from the emitter's schedule (period/duty), not from here.
    """

    cls = "fsk4"
    DEV = {0: 648.0, 1: 1944.0, 2: -648.0, 3: -1944.0}  # dibit -> Hz, as ETSI TS 102 361-1

    def __init__(self, rng, rate_hz, *, baud: float = 4800.0, frame_symbols: int = 144):
        super().__init__(rng, rate_hz)
        self.baud = baud
        self.frame_symbols = frame_symbols
        self.clock = _SymbolClock(baud, rate_hz)
        self.os = 8
        self.taps = _rrc_taps(0.2, self.os)
        self.ph = _Phase(rng.uniform(0, 2 * np.pi))
        self.bandwidth_hz = 12.5e3
        self.last_dibits = np.zeros(0, np.int64)

    def _frame(self):
        d = self.rng.integers(0, 4, self.frame_symbols)
        self.last_dibits = d
        levels = np.array([self.DEV[int(x)] for x in range(4)])[d]
        u = self.clock.sample_times(len(levels))
        return cis(self.ph.integrate(_shaped_message(levels, self.taps, self.os, u), self.rate))

    def params(self):
        return {"baud": self.baud}


class GMSK(Waveform):
    """GSM-like GMSK: 270.833 kBd, BT 0.3, modulation index 0.5 (a GPRS tracker's uplink)."""

    cls = "gmsk"

    def __init__(self, rng, rate_hz, *, baud: float = 1625e3 / 6, bt: float = 0.3, frame_bits: int = 1480):
        super().__init__(rng, rate_hz)
        self.baud, self.bt = baud, bt
        self.frame_bits = frame_bits
        self.clock = _SymbolClock(baud, rate_hz)
        self.os = 8
        self.taps = _gaussian_taps(bt, self.os)
        self.ph = _Phase(rng.uniform(0, 2 * np.pi))
        self.bandwidth_hz = 0.92 * baud + 20e3

    def _frame(self):
        levels = self.rng.integers(0, 2, self.frame_bits).astype(np.float64) * 2 - 1
        u = self.clock.sample_times(len(levels))
        m = _shaped_message(levels, self.taps, self.os, u)
        return cis(self.ph.integrate(m * (self.baud / 4), self.rate))

    def params(self):
        return {"baud": self.baud, "bt": self.bt}


# ---------------------------------------------------------------------------------------------
# LoRa chirp spread spectrum


def lora_symbols(sf: int, bw_hz: float, rate_hz: float, symbols: np.ndarray, *, down: bool = False,
                 t_offset_s: float = 0.0, n: int | None = None) -> np.ndarray:
    """Chirps for `symbols` (cyclic shifts 0..2^sf-1), sampled at any rate, phase from the formula.

    Symbol s is the base up-chirp cyclically shifted by s chips: the instantaneous frequency
    starts at -bw/2 + s*bw/2^sf, rises at bw/Ts and wraps at +bw/2. The phase is computed in closed
    form per symbol (not by summing frequency) so that a textbook dechirp recovers s exactly.
    """
    N = 1 << sf
    ts = N / bw_hz
    count = len(symbols)
    if n is None:
        n = int(math.floor(count * ts * rate_hz - 1e-9)) + 1
    t = t_offset_s + np.arange(n) / rate_hz
    k = np.minimum((t / ts).astype(np.int64), count - 1)
    tl = t - k * ts
    tau = _wrap(tl + np.asarray(symbols, np.float64)[k] / bw_hz, ts)
    phase = 2 * np.pi * (bw_hz / (2 * ts) * tau * tau - bw_hz / 2 * tau)
    if down:
        phase = -phase
    return cis(phase)


class LoRa(Waveform):
    """LoRa packets: 8 preamble up-chirps, 2 sync-word symbols, 2.25 down-chirps, payload.

    The sync word's nibbles are sent as shifts nibble*8 (0x12 private -> 8, 16; 0x34 LoRaWAN ->
    24, 32), as Semtech radios do. Payload symbols are random shifts; `last_symbols` keeps them
    for decoder tests.
    """

    cls = "lora"

    def __init__(self, rng, rate_hz, *, sf: int = 7, bw_hz: float = 125e3, sync_word: int = 0x12,
                 payload_symbols: int | None = None, preamble: int = 8, gap_s: float = 0.0):
        super().__init__(rng, rate_hz)
        if not 6 <= sf <= 12:
            raise ValueError("LoRa SF must be 6..12")
        self.sf, self.bw, self.sync_word, self.preamble = sf, float(bw_hz), sync_word, preamble
        self.payload_symbols = payload_symbols
        self.gap = int(gap_s * rate_hz)
        self.bandwidth_hz = float(bw_hz)
        self.last_symbols = np.zeros(0, np.int64)

    @property
    def symbol_s(self) -> float:
        return (1 << self.sf) / self.bw

    def _frame(self):
        N = 1 << self.sf
        npay = self.payload_symbols or int(self.rng.integers(8, 40))
        pay = self.rng.integers(0, N, npay)
        self.last_symbols = pay
        sync = [((self.sync_word >> 4) & 0xF) * 8 % N, (self.sync_word & 0xF) * 8 % N]
        up = np.concatenate([np.zeros(self.preamble, np.int64), np.array(sync, np.int64)])
        parts = [lora_symbols(self.sf, self.bw, self.rate, up, n=int(round(len(up) * self.symbol_s * self.rate))),
                 lora_symbols(self.sf, self.bw, self.rate, np.zeros(3, np.int64), down=True,
                              n=int(round(2.25 * self.symbol_s * self.rate))),
                 lora_symbols(self.sf, self.bw, self.rate, pay, n=int(round(npay * self.symbol_s * self.rate)))]
        if self.gap:
            parts.append(np.zeros(self.gap, np.complex64))
        return np.concatenate(parts)

    def params(self):
        return {"sf": self.sf, "bw_hz": self.bw, "sync_word": self.sync_word}


# ---------------------------------------------------------------------------------------------
# jammers


class Jammer(Waveform):
    """A jammer: 'barrage' (noise flat across its bandwidth) or 'sweep' (a tone swept saw-tooth)."""

    cls = "jammer"

    def __init__(self, rng, rate_hz, *, kind: str = "barrage", bw_hz: float = 1e6, sweep_period_s: float = 1e-3,
                 frame_s: float = 0.01):
        super().__init__(rng, rate_hz)
        if kind not in ("barrage", "sweep"):
            raise ValueError("jammer kind must be 'barrage' or 'sweep'")
        self.kind, self.bw, self.period = kind, min(float(bw_hz), 0.95 * rate_hz), sweep_period_s
        self.n_frame = 1 << max(10, int(math.log2(max(1024, frame_s * rate_hz))))
        self.ph = _Phase(rng.uniform(0, 2 * np.pi))
        self.n = 0
        self.bandwidth_hz = self.bw

    def _frame(self):
        n = self.n_frame
        if self.kind == "barrage":
            # white noise shaped in the frequency domain: exactly flat inside bw, nothing outside
            f = np.fft.fftfreq(n, 1 / self.rate)
            inside = np.abs(f) <= self.bw / 2
            spec = np.zeros(n, np.complex128)
            k = int(inside.sum())
            spec[inside] = self.rng.standard_normal(k) + 1j * self.rng.standard_normal(k)
            x = np.fft.ifft(spec) * (n / math.sqrt(2 * k))
            return x.astype(np.complex64)
        t = (self.n + np.arange(n)) / self.rate
        self.n += n
        freq = self.bw * (_wrap(t / self.period, 1.0) - 0.5)
        return cis(self.ph.integrate(freq, self.rate))

    def params(self):
        return {"kind": self.kind, "bw_hz": self.bw}


class Silence(Waveform):
    """The 'noise' class: no emitter at all (the band synthesiser supplies the noise)."""

    cls = "noise"

    def __init__(self, rng, rate_hz, *, bw_hz: float = 25e3):
        super().__init__(rng, rate_hz)
        self.bandwidth_hz = float(bw_hz)

    def _frame(self) -> np.ndarray:
        return np.zeros(4096, np.complex64)


WAVEFORMS: dict[str, Callable[..., Waveform]] = {
    "noise": Silence, "wfm": WFM, "nfm": NFM, "am": AM, "ook": OOK, "fsk2": FSK2, "fsk4": FSK4,
    "lora": LoRa, "gmsk": GMSK, "jammer": Jammer,
}


def make_waveform(cls: str, rng: np.random.Generator, rate_hz: float, **params) -> Waveform:
    """The generator for class `cls` (one of CLASSES) with its parameters."""
    try:
        factory = WAVEFORMS[cls]
    except KeyError:
        raise ValueError(f"unknown emitter class {cls!r} (known: {', '.join(CLASSES)})") from None
    return factory(rng, rate_hz, **params)


def generate(cls: str, rng: np.random.Generator, rate_hz: float, n: int, **params) -> np.ndarray:
    """n samples of class `cls` at unit power (see module doc), baseband at 0 Hz."""
    return make_waveform(cls, rng, rate_hz, **params).read(n)


def random_params(cls: str, rng: np.random.Generator, rate_hz: float) -> dict:
    """A plausible random parameter set for `cls` that fits in `rate_hz` (for datasets)."""
    if cls == "wfm":
        return {"deviation_hz": float(rng.uniform(50e3, 75e3))}
    if cls == "nfm":
        return {"deviation_hz": float(rng.uniform(1.8e3, 2.5e3)),
                "ctcss_hz": float(rng.choice([0.0, 67.0, 88.5, 123.0, 151.4])) or None}
    if cls == "am":
        return {"depth": float(rng.uniform(0.4, 0.9))}
    if cls == "ook":
        return {"unit_s": float(rng.uniform(300e-6, 560e-6))}
    if cls == "fsk2":
        baud = float(rng.choice([4800.0, 9600.0, 19200.0, 38400.0, 57600.0, 64000.0]))
        return {"baud": baud, "deviation_hz": float(baud * rng.uniform(0.35, 0.75)),
                "bt": float(rng.choice([0.5, 1.0])) if rng.random() < 0.8 else None}
    if cls == "fsk4":
        return {}
    if cls == "lora":
        bws = [b for b in (125e3, 250e3, 500e3) if b < 0.8 * rate_hz] or [125e3]
        return {"sf": int(rng.integers(7, 13)), "bw_hz": float(rng.choice(bws)),
                "sync_word": int(rng.choice([0x12, 0x34]))}
    if cls == "gmsk":
        return {}
    if cls == "jammer":
        kind = "barrage" if rng.random() < 0.5 else "sweep"
        return {"kind": kind, "bw_hz": float(rng.uniform(0.2, 0.6) * rate_hz),
                "sweep_period_s": float(rng.uniform(20e-6, 2e-3))}
    return {}
