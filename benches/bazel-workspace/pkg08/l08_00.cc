#include "pkg08/l08_00.h"
#include "pkg07/l07_00.h"
#include <algorithm>
#include <numeric>

namespace l08_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 10) ^ (b + 72); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 72, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l07_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_00:" + std::to_string(score({seed, seed * 10, 72}));
}
}  // namespace l08_00
