// CRC-32C with the CPU's own instruction: SSE4.2 on x86-64, the CRC32 extension on ARMv8.
// Swift cannot reach these intrinsics directly, hence this small C target; everything else (the
// table fallback, the API) is in Swift. The instruction code carries its own target attribute,
// so the target builds with the compiler's defaults and still runs, on the tables, on a CPU that
// lacks the instruction. Each architecture gives its detection and two steps (8 bytes, 1 byte);
// the loop over a buffer is shared.
#include "crc32c_hardware.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define RELAY_CRC32C_TARGET __attribute__((target("sse4.2")))

int relay_crc32c_hardware_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

RELAY_CRC32C_TARGET static inline uint32_t crc32c_step8(uint32_t crc, uint64_t word) {
  return (uint32_t)_mm_crc32_u64(crc, word);
}

RELAY_CRC32C_TARGET static inline uint32_t crc32c_step1(uint32_t crc, uint8_t byte) {
  return _mm_crc32_u8(crc, byte);
}

// The instructions read their operand as little-endian bytes, as memcpy loads them only there.
#elif defined(__aarch64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#include <arm_acle.h>
#define RELAY_CRC32C_TARGET __attribute__((target("+crc")))
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1UL << 7)  // arm64's asm/hwcap.h, for C libraries that do not define it
#endif
#endif

int relay_crc32c_hardware_available(void) {
#if defined(__ARM_FEATURE_CRC32)
  return 1;  // the build targets only CPUs that have it (Apple silicon, ARMv8.1 and later)
#elif defined(__linux__)
  // Optional in ARMv8.0, so asked of the kernel; every ARMv8.0 server and phone core has it.
  return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#else
  return 0;
#endif
}

RELAY_CRC32C_TARGET static inline uint32_t crc32c_step8(uint32_t crc, uint64_t word) {
  return __crc32cd(crc, word);
}

RELAY_CRC32C_TARGET static inline uint32_t crc32c_step1(uint32_t crc, uint8_t byte) {
  return __crc32cb(crc, byte);
}
#endif

#if defined(RELAY_CRC32C_TARGET)

RELAY_CRC32C_TARGET uint32_t relay_crc32c_hardware(const void *data, size_t length) {
  const uint8_t *bytes = data;
  uint32_t crc = 0xFFFFFFFFu;
  while (length >= 8) {
    uint64_t word;
    memcpy(&word, bytes, sizeof word);
    crc = crc32c_step8(crc, word);
    bytes += 8;
    length -= 8;
  }
  while (length > 0) {
    crc = crc32c_step1(crc, *bytes);
    bytes += 1;
    length -= 1;
  }
  return ~crc;
}

#else

int relay_crc32c_hardware_available(void) { return 0; }

uint32_t relay_crc32c_hardware(const void *data, size_t length) {
  (void)data;
  (void)length;
  return 0;
}

#endif
