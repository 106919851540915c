#include "pkg03/l03_00.h"
#include "pkg02/l02_00.h"
#include <algorithm>
#include <numeric>

namespace l03_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 4) ^ (b + 27); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 27, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l02_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_00:" + std::to_string(score({seed, seed * 4, 27}));
}
}  // namespace l03_00
