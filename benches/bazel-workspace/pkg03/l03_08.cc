#include "pkg03/l03_08.h"
#include "pkg03/l03_07.h"
#include <algorithm>
#include <numeric>

namespace l03_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 12) ^ (b + 35); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 35, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l03_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_08:" + std::to_string(score({seed, seed * 12, 35}));
}
}  // namespace l03_08
