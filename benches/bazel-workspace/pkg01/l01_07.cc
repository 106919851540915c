#include "pkg01/l01_07.h"
#include "pkg01/l01_06.h"
#include <algorithm>
#include <numeric>

namespace l01_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 6) ^ (b + 16); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 16, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l01_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_07:" + std::to_string(score({seed, seed * 6, 16}));
}
}  // namespace l01_07
