// The test vectors of Sources/CCRC32C, linked with it for one CPU and run by
// test_any_architecture.py: natively on x86-64, and for arm64 under qemu-user.
//
//   crc32c-vectors hardware   the CPU must report the instruction, and the instruction path must
//                             give the standard CRC-32C values and agree with a bitwise reference
//                             on every alignment and on short and long lengths.
//   crc32c-vectors fallback   built with -DRELAY_HIDE_HWCAP_CRC32, which takes HWCAP_CRC32 out of
//                             what getauxval reports, as on an ARMv8.0 core without the extension:
//                             the target must then report no instruction (so the relay uses its
//                             Swift tables, which FormatTests check on every host).
#if defined(RELAY_HIDE_HWCAP_CRC32)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/auxv.h>
#endif

#include <stdio.h>
#include <string.h>

#include "crc32c_hardware.h"

#if defined(RELAY_HIDE_HWCAP_CRC32)
// Takes the place of the C library's getauxval for the C target linked into this program.
unsigned long getauxval(unsigned long type) {
  unsigned long (*next)(unsigned long) =
      (unsigned long (*)(unsigned long))dlsym(RTLD_NEXT, "getauxval");
  unsigned long value = next(type);
  return type == AT_HWCAP ? value & ~(unsigned long)HWCAP_CRC32 : value;
}
#endif

/// One bit at a time, straight from the definition (reflected polynomial 0x82F63B78).
static uint32_t bitwise_crc32c(const uint8_t *bytes, size_t length) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < length; i++) {
    crc ^= bytes[i];
    for (int bit = 0; bit < 8; bit++) {
      crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
  }
  return ~crc;
}

static int failures;

static void expect(const char *what, uint32_t got, uint32_t want) {
  if (got != want) {
    printf("FAIL %s: got 0x%08X, want 0x%08X\n", what, got, want);
    failures++;
  }
}

/// The published check value and the iSCSI vectors of RFC 3720 B.4, through `crc`.
static void standard_vectors(const char *name, uint32_t (*crc)(const void *, size_t)) {
  uint8_t buffer[32];
  char what[64];
  snprintf(what, sizeof what, "%s \"123456789\"", name);
  expect(what, crc("123456789", 9), 0xE3069283u);
  snprintf(what, sizeof what, "%s empty", name);
  expect(what, crc(buffer, 0), 0x00000000u);
  memset(buffer, 0, sizeof buffer);
  snprintf(what, sizeof what, "%s 32 zero bytes", name);
  expect(what, crc(buffer, sizeof buffer), 0x8A9136AAu);
  memset(buffer, 0xFF, sizeof buffer);
  snprintf(what, sizeof what, "%s 32 0xFF bytes", name);
  expect(what, crc(buffer, sizeof buffer), 0x62A8AB43u);
  for (int i = 0; i < 32; i++) buffer[i] = (uint8_t)i;
  snprintf(what, sizeof what, "%s bytes 0..31", name);
  expect(what, crc(buffer, sizeof buffer), 0x46DD794Eu);
  for (int i = 0; i < 32; i++) buffer[i] = (uint8_t)(31 - i);
  snprintf(what, sizeof what, "%s bytes 31..0", name);
  expect(what, crc(buffer, sizeof buffer), 0x113FDB5Cu);
}

static uint32_t reference(const void *data, size_t length) { return bitwise_crc32c(data, length); }

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "hardware") != 0 && strcmp(argv[1], "fallback") != 0)) {
    fprintf(stderr, "usage: %s hardware|fallback\n", argv[0]);
    return 2;
  }
  int want_hardware = strcmp(argv[1], "hardware") == 0;
  int available = relay_crc32c_hardware_available() != 0;
  if (available != want_hardware) {
    printf("FAIL relay_crc32c_hardware_available() is %d, want %d\n", available, want_hardware);
    return 1;
  }
  standard_vectors("reference", reference);
  int compared = 0;
  if (available) {
    standard_vectors("hardware", relay_crc32c_hardware);
    // Every start alignment, every length through five 8-byte blocks with each byte tail, and
    // long buffers up to a page and beyond.
    static uint8_t noise[4096 + 64];
    uint32_t state = 0x9E3779B9u;
    for (size_t i = 0; i < sizeof noise; i++) {
      state ^= state << 13, state ^= state >> 17, state ^= state << 5;
      noise[i] = (uint8_t)state;
    }
    static const size_t long_lengths[] = {255, 1000, 1023, 1024, 4095, 4096, 4096 + 48};
    for (size_t start = 0; start < 16; start++) {
      char what[64];
      for (size_t length = 0; length <= 40; length++, compared++) {
        snprintf(what, sizeof what, "hardware start %zu length %zu", start, length);
        expect(what, relay_crc32c_hardware(noise + start, length),
               bitwise_crc32c(noise + start, length));
      }
      for (size_t i = 0; i < sizeof long_lengths / sizeof long_lengths[0]; i++, compared++) {
        snprintf(what, sizeof what, "hardware start %zu length %zu", start, long_lengths[i]);
        expect(what, relay_crc32c_hardware(noise + start, long_lengths[i]),
               bitwise_crc32c(noise + start, long_lengths[i]));
      }
    }
  }
  if (failures) return 1;
  printf("OK %s: available=%d, standard vectors, %d buffers against the bitwise reference\n",
         argv[1], available, compared);
  return 0;
}
