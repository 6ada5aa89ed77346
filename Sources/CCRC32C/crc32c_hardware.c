// CRC-32C with the CPU's own instruction. Swift cannot reach the SSE4.2 intrinsics directly,
// hence this small C target; everything else (the table fallback, the API) is in Swift.
#include "crc32c_hardware.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>

int relay_crc32c_hardware_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) uint32_t relay_crc32c_hardware(const void *data,
                                                                  size_t length) {
  const uint8_t *bytes = data;
  uint64_t crc = 0xFFFFFFFFu;
  while (length >= 8) {
    uint64_t word;
    memcpy(&word, bytes, sizeof word);
    crc = _mm_crc32_u64(crc, word);
    bytes += 8;
    length -= 8;
  }
  uint32_t crc32 = (uint32_t)crc;
  while (length > 0) {
    crc32 = _mm_crc32_u8(crc32, *bytes);
    bytes += 1;
    length -= 1;
  }
  return ~crc32;
}

#else

int relay_crc32c_hardware_available(void) { return 0; }

uint32_t relay_crc32c_hardware(const void *data, size_t length) {
  (void)data;
  (void)length;
  return 0;
}

#endif
