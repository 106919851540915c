#include "pkg04/l04_00.h"
#include "pkg03/l03_00.h"
#include <algorithm>
#include <numeric>

namespace l04_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 13) ^ (b + 36); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 36, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l03_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_00:" + std::to_string(score({seed, seed * 13, 36}));
}
}  // namespace l04_00
