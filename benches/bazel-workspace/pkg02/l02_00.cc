#include "pkg02/l02_00.h"
#include "pkg01/l01_00.h"
#include <algorithm>
#include <numeric>

namespace l02_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 8) ^ (b + 18); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 18, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l01_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_00:" + std::to_string(score({seed, seed * 8, 18}));
}
}  // namespace l02_00
