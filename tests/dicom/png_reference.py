# Independent PNG coder for the raster_file tests (zlib + struct + numpy, no libpng).
#   png_reference.py write DIR   writes one PNG per colour type/bit depth plus NAME.rgb, the
#                                8-bit RGB that a correct reader must produce (PNG spec,
#                                ISO/IEC 15948 sections 6-9: sample depth scaling, palette, Adam7)
#   png_reference.py read FILE   decodes an 8-bit grey or RGB, non-interlaced PNG and prints
#                                "width height channels" then the samples' hex on stdout
# SPDX-License-Identifier: GPL-3.0-or-later
import struct
import sys
import zlib

import numpy as np


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_rows(samples, bit_depth):
    """samples: H x (W*channels) uint array -> list of raw row bytes (no filter byte)."""
    rows = []
    for row in samples:
        if bit_depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per_byte = 8 // bit_depth
            padded = np.zeros(((len(row) + per_byte - 1) // per_byte) * per_byte, dtype=np.uint8)
            padded[: len(row)] = row
            grouped = padded.reshape(-1, per_byte)
            packed = np.zeros(len(grouped), dtype=np.uint8)
            for i in range(per_byte):
                packed |= (grouped[:, i] << (8 - bit_depth * (i + 1))).astype(np.uint8)
            rows.append(packed.tobytes())
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, pixels, colour_type, bit_depth, palette=None, trns=None, interlace=False):
    """pixels: H x W x C array of samples at bit_depth (indices for palette)."""
    height, width, channels = pixels.shape
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx, :]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for row in pack_rows(sub.reshape(sub.shape[0], -1), bit_depth):
            raw += b"\x00" + row  # filter type None
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(raw, 9))
    out += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def to8(samples, bit_depth):
    # 16-bit: scaled with rounding (what libpng's png_set_scale_16 does, v * 255 / 65535).
    # Below 8 bits: grey levels spread over 0..255 (PNG spec 13.12, exact for the scale factors).
    maxval = (1 << bit_depth) - 1
    return np.floor(samples.astype(np.float64) * 255.0 / maxval + 0.5).astype(np.uint8)


def write_cases(folder):
    rng = np.random.default_rng(20240613)
    width, height = 37, 23  # odd sizes exercise row padding of packed depths
    cases = []

    def save(name, pixels, colour_type, bit_depth, expected_rgb, **kw):
        write_png(f"{folder}/{name}.png", pixels, colour_type, bit_depth, **kw)
        with open(f"{folder}/{name}.rgb", "wb") as f:
            f.write(np.ascontiguousarray(expected_rgb, dtype=np.uint8).tobytes())
        cases.append(name)

    for depth in (1, 2, 4, 8, 16):
        grey = rng.integers(0, 1 << depth, size=(height, width, 1))
        e = to8(grey, depth)
        save(f"grey{depth}", grey, 0, depth, np.repeat(e, 3, axis=2))
    for depth in (8, 16):
        ga = rng.integers(0, 1 << depth, size=(height, width, 2))
        e = to8(ga[:, :, :1], depth)
        save(f"grey_alpha{depth}", ga, 4, depth, np.repeat(e, 3, axis=2))
        rgb = rng.integers(0, 1 << depth, size=(height, width, 3))
        save(f"rgb{depth}", rgb, 2, depth, to8(rgb, depth))
        rgba = rng.integers(0, 1 << depth, size=(height, width, 4))
        save(f"rgba{depth}", rgba, 6, depth, to8(rgba[:, :, :3], depth))
    for depth in (1, 2, 4, 8):
        entries = 1 << depth
        palette = rng.integers(0, 256, size=(entries, 3))
        index = rng.integers(0, entries, size=(height, width, 1))
        trns = bytes(rng.integers(0, 256, size=entries).astype(np.uint8)) if depth == 8 else None
        save(f"palette{depth}", index, 3, depth, palette[index[:, :, 0]], palette=palette, trns=trns)
    rgb = rng.integers(0, 256, size=(height, width, 3))
    save("rgb8_interlaced", rgb, 2, 8, rgb, interlace=True)
    grey = rng.integers(0, 16, size=(height, width, 1))
    save("grey4_interlaced", grey, 0, 4, np.repeat(to8(grey, 4), 3, axis=2), interlace=True)
    with open(f"{folder}/cases.txt", "w") as f:
        f.write("\n".join(f"{c} {width} {height}" for c in cases) + "\n")


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (0, 2) and interlace == 0, f"unsupported layout {header}"
    channels = 3 if colour == 2 else 1
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                line[i] = (line[i] + paeth(a, b, c)) & 255
        out[y * stride : (y + 1) * stride] = line
        prev = line
    print(width, height, channels)
    print(bytes(out).hex())


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write_cases(sys.argv[2])
    else:
        read_png(sys.argv[2])
