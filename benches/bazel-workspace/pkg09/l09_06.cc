#include "pkg09/l09_06.h"
#include "pkg09/l09_05.h"
#include <algorithm>
#include <numeric>

namespace l09_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 12) ^ (b + 87); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 87, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l09_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_06:" + std::to_string(score({seed, seed * 12, 87}));
}
}  // namespace l09_06
