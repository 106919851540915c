#include "pkg03/l03_07.h"
#include "pkg03/l03_06.h"
#include <algorithm>
#include <numeric>

namespace l03_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 11) ^ (b + 34); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 34, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l03_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_07:" + std::to_string(score({seed, seed * 11, 34}));
}
}  // namespace l03_07
