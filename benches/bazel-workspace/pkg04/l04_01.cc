#include "pkg04/l04_01.h"
#include "pkg04/l04_00.h"
#include <algorithm>
#include <numeric>

namespace l04_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 14) ^ (b + 37); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 37, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l04_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_01:" + std::to_string(score({seed, seed * 14, 37}));
}
}  // namespace l04_01
